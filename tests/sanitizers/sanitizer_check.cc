// sanitizer_check: proves that a sanitizer build finds what it is for, in code shaped like ours.
// Each mode is a CTest test of tests/sanitizers/CMakeLists.txt:
//   guarded        data handed between threads only through absl::Mutex (Lock/Unlock,
//                  LockWhen, Await, ReaderLock, CondVar), absl::Notification and
//                  absl::BlockingCounter: must run clean under TSan (with tsan_absl.cc; without
//                  it, TSan reports a race here, which sanitizer_check_guarded_unsupported shows)
//   racy           a write under the mutex, then one outside it on another thread: TSan must
//                  report it
//   use_after_free a read of freed memory: ASan must report it
//   overflow       a signed integer overflow: UBSan must report it and stop the program
#include <atomic>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

// A counter and a queue of plain (non-atomic) data, guarded like the server's state.
class Guarded {
 public:
  void Increment() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++counter_;
  }

  // The deliberate bug of the racy mode: a write without the mutex.
  void RacyIncrement() ABSL_NO_THREAD_SAFETY_ANALYSIS { ++counter_; }

  int Read() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::ReaderMutexLock lock(&mu_);
    return counter_;
  }

  void Push(int value) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    items_.push_back(value);
    cv_.Signal();
  }

  // Waits with a Condition (evaluated, by absl, possibly on the pushing thread).
  int PopWhen() ABSL_LOCKS_EXCLUDED(mu_) {
    mu_.LockWhen(absl::Condition(this, &Guarded::HasItemsLocked));
    const int value = items_.back();
    items_.pop_back();
    mu_.Unlock();
    return value;
  }

  int PopAwait() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &Guarded::HasItemsLocked));
    const int value = items_.back();
    items_.pop_back();
    return value;
  }

  int PopCondVar() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    while (items_.empty()) cv_.WaitWithTimeout(&mu_, absl::Seconds(10));
    const int value = items_.back();
    items_.pop_back();
    return value;
  }

 private:
  bool HasItemsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !items_.empty(); }

  absl::Mutex mu_;
  absl::CondVar cv_;
  int counter_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> items_ ABSL_GUARDED_BY(mu_);
};

// Thread A increments under the mutex, thread B without it once A is done; a relaxed atomic
// (which orders nothing for TSan) makes B wait, so the race is there on every run.
int RunRacy() {
  Guarded guarded;
  std::atomic<bool> a_done{false};
  std::thread a([&] {
    guarded.Increment();
    a_done.store(true, std::memory_order_relaxed);
  });
  std::thread b([&] {
    while (!a_done.load(std::memory_order_relaxed)) std::this_thread::yield();
    guarded.RacyIncrement();
  });
  a.join();
  b.join();
  std::printf("counter %d\n", guarded.Read());
  return 0;
}

int RunGuarded() {
  Guarded guarded;
  constexpr int kThreads = 4;
  constexpr int kIncrements = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&guarded] {
      for (int i = 0; i < kIncrements; ++i) {
        guarded.Increment();
        if (i % 100 == 0) guarded.Read();
      }
    });
  }
  // Producer and consumers alive at the same time: only the mutex orders their accesses.
  std::thread consumer([&guarded] {
    long sum = 0;
    for (int i = 0; i < 300; ++i) {
      switch (i % 3) {
        case 0:
          sum += guarded.PopWhen();
          break;
        case 1:
          sum += guarded.PopAwait();
          break;
        default:
          sum += guarded.PopCondVar();
          break;
      }
    }
    std::printf("consumer sum %ld\n", sum);
  });
  for (int i = 0; i < 300; ++i) guarded.Push(i);
  consumer.join();

  // A plain value handed over by a Notification, then by a BlockingCounter.
  auto handed = std::make_unique<int[]>(kThreads);
  int base = 0;
  absl::Notification ready;
  absl::BlockingCounter done(kThreads);
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      ready.WaitForNotification();
      handed[t] = base + t;
      done.DecrementCount();
    });
  }
  base = 100;
  ready.Notify();
  done.Wait();
  long total = 0;
  for (int t = 0; t < kThreads; ++t) total += handed[t];

  for (auto& thread : threads) thread.join();
  for (auto& worker : workers) worker.join();
  const int expected = kThreads * kIncrements;
  std::printf("counter %d (expected %d), handed total %ld\n", guarded.Read(), expected, total);
  return guarded.Read() == expected ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (std::strcmp(mode, "guarded") == 0) return RunGuarded();
  if (std::strcmp(mode, "racy") == 0) return RunRacy();
  if (std::strcmp(mode, "use_after_free") == 0) {
    auto* values = new int[4]{1, 2, 3, 4};
    delete[] values;
    volatile int* dangling = values;
    return dangling[2];
  }
  if (std::strcmp(mode, "overflow") == 0) {
    volatile int big = std::numeric_limits<int>::max();
    const int sum = big + argc;
    std::printf("sum %d\n", sum);
    return 0;
  }
  std::fprintf(stderr, "usage: sanitizer_check guarded|racy|use_after_free|overflow\n");
  return 2;
}

#include "workers/worker_pool.h"

#include <pthread.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "workers/bounded_queue.h"

namespace hourglass {
namespace {

std::string CurrentThreadName() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return name;
}

// Every pushed item reaches the handler exactly once, and Join returns once the queue is closed.
TEST(WorkerPoolTest, ProcessesEveryItemExactlyOnce) {
  constexpr int kItems = 20000;
  BoundedQueue<int> queue(16);
  absl::Mutex mu;
  std::vector<int> times_handled(kItems, 0);
  WorkerPool<int> pool("deliver", 4, queue, [&](int item) {
    absl::MutexLock lock(&mu);
    ++times_handled[item];
  });
  EXPECT_EQ(pool.threads(), 4);

  for (int i = 0; i < kItems; ++i) ASSERT_TRUE(queue.Push(i));
  queue.Close();
  pool.Join();

  absl::MutexLock lock(&mu);
  for (int i = 0; i < kItems; ++i) ASSERT_EQ(times_handled[i], 1) << "item " << i;
}

// Items still queued when the queue closes are handled before Join returns.
TEST(WorkerPoolTest, JoinDrainsItemsQueuedBeforeClose) {
  BoundedQueue<int> queue(8);
  absl::Notification release;
  absl::Mutex mu;
  std::vector<int> handled;
  WorkerPool<int> pool("drain", 1, queue, [&](int item) {
    release.WaitForNotification();
    absl::MutexLock lock(&mu);
    handled.push_back(item);
  });
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(queue.Push(i));
  queue.Close();
  release.Notify();
  pool.Join();

  absl::MutexLock lock(&mu);
  EXPECT_EQ(handled, (std::vector<int>{0, 1, 2, 3, 4}));
}

// Idle workers blocked on an empty queue exit when it closes; Join may be called again, also
// from several threads at once, and the destructor after it is harmless.
TEST(WorkerPoolTest, JoinIsIdempotent) {
  BoundedQueue<int> queue(4);
  WorkerPool<int> pool("idle", 3, queue, [](int) {});
  queue.WaitUntilBlockedForTest(/*pushers=*/0, /*poppers=*/3);
  queue.Close();
  std::thread other_joiner([&] { pool.Join(); });
  pool.Join();
  other_joiner.join();
  pool.Join();
}

// Worker threads are named "<name>-<index>", cut to Linux's 15-character limit.
TEST(WorkerPoolTest, NamesItsThreads) {
  BoundedQueue<int> queue(4);
  absl::Mutex mu;
  std::set<std::string> names;
  absl::BlockingCounter both_running(2);
  absl::Notification release;
  {
    WorkerPool<int> pool("deliver", 2, queue, [&](int) {
      {
        absl::MutexLock lock(&mu);
        names.insert(CurrentThreadName());
      }
      both_running.DecrementCount();
      release.WaitForNotification();  // so that each worker takes exactly one item
    });
    ASSERT_TRUE(queue.Push(0));
    ASSERT_TRUE(queue.Push(1));
    both_running.Wait();
    release.Notify();
    queue.Close();
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(names, (std::set<std::string>{"deliver-0", "deliver-1"}));
  }

  BoundedQueue<int> long_queue(1);
  std::string long_name;
  {
    WorkerPool<int> pool("pull-deliverer-pool", 1, long_queue,
                         [&](int) { long_name = CurrentThreadName(); });
    ASSERT_TRUE(long_queue.Push(0));
    long_queue.Close();
  }
  EXPECT_EQ(long_name, "pull-deliverer-");
}

// A handler that pushes back into the queue cannot deadlock shutdown: with the queue full and
// every worker blocked in that Push, Close makes the Pushes return false and Join returns.
TEST(WorkerPoolTest, RePushingHandlerDoesNotDeadlockOnClose) {
  constexpr int kThreads = 2;
  BoundedQueue<int> queue(2);
  absl::BlockingCounter seeds_taken(kThreads);
  absl::Notification release_seeds;
  absl::Mutex mu;
  std::vector<int> handled;
  std::vector<bool> re_push_results;
  WorkerPool<int> pool("repush", kThreads, queue, [&](int item) {
    if (item < kThreads) {  // a seed: hold it until the queue has been filled behind it
      seeds_taken.DecrementCount();
      release_seeds.WaitForNotification();
    }
    const bool pushed = queue.Push(item + 100);
    absl::MutexLock lock(&mu);
    handled.push_back(item);
    re_push_results.push_back(pushed);
  });

  ASSERT_TRUE(queue.Push(0));
  ASSERT_TRUE(queue.Push(1));
  seeds_taken.Wait();           // each worker holds one seed; nobody is popping
  ASSERT_TRUE(queue.Push(10));  // fill the queue to capacity behind them
  ASSERT_TRUE(queue.Push(11));
  release_seeds.Notify();
  queue.WaitUntilBlockedForTest(/*pushers=*/kThreads, /*poppers=*/0);  // the deadlock setup

  queue.Close();
  pool.Join();

  absl::MutexLock lock(&mu);
  EXPECT_EQ(std::multiset<int>(handled.begin(), handled.end()), (std::multiset<int>{0, 1, 10, 11}));
  EXPECT_EQ(re_push_results, std::vector<bool>(4, false));
  EXPECT_EQ(queue.size(), 0u);
}

// Move-only items are handed to the handler by value.
TEST(WorkerPoolTest, HandsMoveOnlyItemsToHandler) {
  BoundedQueue<std::unique_ptr<int>> queue(4);
  int sum = 0;
  {
    WorkerPool<std::unique_ptr<int>> pool("move", 1, queue,
                                          [&](std::unique_ptr<int> item) { sum += *item; });
    ASSERT_TRUE(queue.Push(std::make_unique<int>(2)));
    ASSERT_TRUE(queue.Push(std::make_unique<int>(3)));
    queue.Close();
  }  // the destructor joins
  EXPECT_EQ(sum, 5);
}

// A pool without threads would never drain its queue, so it ends the process at construction.
TEST(WorkerPoolDeathTest, ZeroThreadsAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  BoundedQueue<int> queue(1);
  EXPECT_DEATH(WorkerPool<int>("none", 0, queue, [](int) {}), "threads must be >= 1, got 0");
}

}  // namespace
}  // namespace hourglass

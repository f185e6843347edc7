// Tests of PushDispatcher with a fake source and fake pushers: the per-queue cap, no
// head-of-line blocking across queues, exactly-once hand-off under concurrent Notify, and
// shutdown aborting deliveries in progress. Waits are on conditions with generous deadlines;
// nothing sleeps.
#include "workers/push_dispatcher.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hourglass {
namespace {

constexpr absl::Duration kPatience = absl::Seconds(30);

// Workers finish their bookkeeping (and look once more for work) just after a delivery is
// recorded: waits, yielding, until the in-flight counts equal `expected`.
bool AwaitInFlight(const PushDispatcher& dispatcher,
                   const std::vector<std::pair<std::string, int>>& expected) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (dispatcher.InFlight() != expected) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Ready tasks per queue; records every finished attempt.
class FakeSource final : public PushSource {
 public:
  void Add(const std::string& queue, const std::string& task_id, PushRequest::Kind kind) {
    absl::MutexLock lock(&mu_);
    PushJob job;
    job.lease_token = "token-" + task_id;
    job.request.kind = kind;
    job.request.task_id = task_id;
    job.request.queue = queue;
    ready_[queue].push_back(std::move(job));
  }
  std::optional<PushJob> Claim(const std::string& queue) override {
    absl::MutexLock lock(&mu_);
    std::deque<PushJob>& ready = ready_[queue];
    if (ready.empty()) return std::nullopt;
    PushJob job = std::move(ready.front());
    ready.pop_front();
    return job;
  }
  void Finish(const PushJob& job, const PushResult& result) override {
    absl::MutexLock lock(&mu_);
    finished_[job.request.task_id].push_back(result.outcome);
  }
  // Waits until `n` attempts have finished; false after kPatience.
  bool AwaitFinished(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      size_t total = 0;
      for (const auto& [id, outcomes] : finished_) total += outcomes.size();
      return total >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), kPatience);
  }
  std::map<std::string, std::vector<PushResult::Outcome>> finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::deque<PushJob>> ready_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<PushResult::Outcome>> finished_ ABSL_GUARDED_BY(mu_);
};

// Succeeds at once, except for queues marked as hanging: those block until Release() or Abort().
class FakePusher final : public Pusher {
 public:
  void Hang(const std::string& queue) {
    absl::MutexLock lock(&mu_);
    hanging_[queue] = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    hanging_.clear();
  }
  PushResult Push(const PushRequest& request) override {
    absl::MutexLock lock(&mu_);
    int& running = running_[request.queue];
    ++running;
    max_running_[request.queue] = std::max(max_running_[request.queue], running);
    auto released = [this, &request]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return aborted_ || !hanging_[request.queue];
    };
    mu_.Await(absl::Condition(&released));
    --running;
    PushResult result;
    result.outcome = aborted_ ? PushResult::Outcome::kAborted : PushResult::Outcome::kSucceeded;
    return result;
  }
  void Abort() override {
    absl::MutexLock lock(&mu_);
    aborted_ = true;
  }
  bool AwaitRunning(const std::string& queue, int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_[queue] >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kPatience);
  }
  int max_running(const std::string& queue) {
    absl::MutexLock lock(&mu_);
    return max_running_[queue];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, bool> hanging_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> running_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> max_running_ ABSL_GUARDED_BY(mu_);
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
};

// A hanging endpoint occupies at most queue_concurrency workers; every other queue keeps flowing
// on the remaining ones, and the hanging queue's backlog drains once the endpoint recovers.
TEST(PushDispatcherTest, HangingQueueHoldsUpOnlyItself) {
  FakeSource source;
  FakePusher http;
  FakePusher grpc;
  http.Hang("slow");
  PushDispatcher dispatcher(source, http, grpc, {.threads = 4, .queue_concurrency = 2});
  for (int i = 0; i < 10; ++i) {
    source.Add("slow", absl::StrCat("slow-", i), PushRequest::Kind::kHttp);
    dispatcher.Notify("slow");
  }
  ASSERT_TRUE(http.AwaitRunning("slow", 2));
  for (int i = 0; i < 50; ++i) {
    source.Add(i % 2 == 0 ? "fast-http" : "fast-grpc", absl::StrCat("fast-", i),
               i % 2 == 0 ? PushRequest::Kind::kHttp : PushRequest::Kind::kGrpc);
    dispatcher.Notify(i % 2 == 0 ? "fast-http" : "fast-grpc");
  }
  ASSERT_TRUE(source.AwaitFinished(50)) << "fast queues were held up by the slow one";
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(source.finished()[absl::StrCat("fast-", i)],
              std::vector<PushResult::Outcome>{PushResult::Outcome::kSucceeded});
  }
  EXPECT_EQ(http.max_running("slow"), 2);
  EXPECT_TRUE(AwaitInFlight(dispatcher, {{"slow", 2}})) << "the slow queue exceeded its cap";
  EXPECT_GE(grpc.max_running("fast-grpc"), 1);
  EXPECT_EQ(http.max_running("fast-grpc"), 0);  // gRPC jobs go to the gRPC pusher

  http.Release();
  ASSERT_TRUE(source.AwaitFinished(60));
  EXPECT_EQ(http.max_running("slow"), 2);
  EXPECT_EQ(source.finished().size(), 60u);
}

// Many threads notifying at once: every task is claimed and finished exactly once, and a task
// made ready while a worker finds its queue empty is not stranded.
TEST(PushDispatcherTest, EveryReadyTaskIsDeliveredExactlyOnce) {
  FakeSource source;
  FakePusher http;
  FakePusher grpc;
  PushDispatcher dispatcher(source, http, grpc, {.threads = 8, .queue_concurrency = 3});
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 2000;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        const std::string queue = absl::StrCat("q", (p + i) % 5);
        source.Add(queue, absl::StrCat(p, "-", i), PushRequest::Kind::kHttp);
        dispatcher.Notify(queue);
      }
    });
  }
  for (std::thread& producer : producers) producer.join();
  ASSERT_TRUE(source.AwaitFinished(kProducers * kPerProducer));
  const auto finished = source.finished();
  EXPECT_EQ(finished.size(), static_cast<size_t>(kProducers * kPerProducer));
  for (const auto& [id, outcomes] : finished) EXPECT_EQ(outcomes.size(), 1u) << id;
  for (int q = 0; q < 5; ++q) EXPECT_LE(http.max_running(absl::StrCat("q", q)), 3);
  EXPECT_TRUE(AwaitInFlight(dispatcher, {}));
}

// Shutdown aborts the deliveries in progress (the source hears kAborted, so it can release the
// tasks), joins the workers, and ignores later notifications.
TEST(PushDispatcherTest, ShutdownAbortsDeliveriesInProgress) {
  FakeSource source;
  FakePusher http;
  FakePusher grpc;
  http.Hang("q");
  PushDispatcher dispatcher(source, http, grpc, {.threads = 2, .queue_concurrency = 2});
  source.Add("q", "a", PushRequest::Kind::kHttp);
  source.Add("q", "b", PushRequest::Kind::kHttp);
  dispatcher.Notify("q");
  ASSERT_TRUE(http.AwaitRunning("q", 2));
  dispatcher.Shutdown();
  EXPECT_EQ(source.finished()["a"],
            std::vector<PushResult::Outcome>{PushResult::Outcome::kAborted});
  EXPECT_EQ(source.finished()["b"],
            std::vector<PushResult::Outcome>{PushResult::Outcome::kAborted});
  source.Add("q", "c", PushRequest::Kind::kHttp);
  dispatcher.Notify("q");
  dispatcher.Shutdown();  // idempotent
  EXPECT_EQ(source.finished().count("c"), 0u);
}

}  // namespace
}  // namespace hourglass

// Tests of TaskStore, the owner of task state: every transition of the life cycle (DESIGN.md §4),
// every error code, and a randomized run checked against a reference model.
//
// Time is simulated: a test advances FakeClock and hands the cookies that FakeTimers finds due
// to TaskStore::OnTimer, as the tick thread would (Tick()). Nothing here sleeps.
#include "store/task_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/store/fake_timers.h"
#include "tests/testing/fake_clock.h"
#include "wheel/clock.h"

namespace hourglass {

// gtest prints these by name in failure messages (found by ADL).
void PrintTo(TaskState state, std::ostream* os) { *os << TaskStateName(state); }
void PrintTo(TimerOutcome::Kind kind, std::ostream* os) {
  switch (kind) {
    case TimerOutcome::Kind::kStale:
      *os << "kStale";
      return;
    case TimerOutcome::Kind::kReady:
      *os << "kReady";
      return;
    case TimerOutcome::Kind::kLeaseRetry:
      *os << "kLeaseRetry";
      return;
    case TimerOutcome::Kind::kLeaseDead:
      *os << "kLeaseDead";
      return;
    case TimerOutcome::Kind::kForgotten:
      *os << "kForgotten";
      return;
  }
  *os << "Kind(" << static_cast<int>(kind) << ")";
}

namespace {

using Kind = TimerOutcome::Kind;

constexpr absl::Duration kRetention = absl::Hours(1);
constexpr absl::Duration kMs = absl::Milliseconds(1);
// 2024-01-01T00:00:00Z.
const absl::Time kStart = absl::FromUnixSeconds(1704067200);

constexpr absl::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

class TaskStoreTest : public ::testing::Test {
 protected:
  NewTask Task(std::string queue, std::string task_id, std::string payload, absl::Duration delay,
               RetryPolicy retry_policy = {}) {
    NewTask task;
    task.queue = std::move(queue);
    task.task_id = std::move(task_id);
    task.payload = std::move(payload);
    task.due_time = clock_.Now() + delay;
    task.retry_policy = retry_policy;
    return task;
  }

  ScheduleResult MustSchedule(NewTask task) {
    absl::StatusOr<ScheduleResult> result = store_.Schedule(std::move(task));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : ScheduleResult{};
  }

  // Schedules a task due now and fires its timer: the task is READY.
  void ScheduleReady(const std::string& queue, const std::string& task_id,
                     RetryPolicy retry_policy = {}) {
    MustSchedule(Task(queue, task_id, "payload of " + task_id, absl::ZeroDuration(), retry_policy));
    std::vector<TimerOutcome> fired = FireNow();
    ASSERT_EQ(fired.size(), 1u);
    EXPECT_EQ(fired[0].kind, Kind::kReady);
    EXPECT_EQ(fired[0].task_id, task_id);
  }

  // Leases exactly one task of `queue`.
  LeasedTask LeaseOne(absl::string_view queue, absl::Duration lease_duration) {
    std::vector<LeasedTask> leased = store_.Lease(queue, 1, lease_duration);
    EXPECT_EQ(leased.size(), 1u);
    return leased.empty() ? LeasedTask{} : leased[0];
  }

  // Advances the clock by `d` and delivers every timer due by then, as the tick thread does.
  std::vector<TimerOutcome> Tick(absl::Duration d) {
    clock_.Advance(d);
    return FireNow();
  }

  // Delivers every timer due now, including timers armed by the delivered ones that are due now.
  std::vector<TimerOutcome> FireNow() {
    std::vector<TimerOutcome> outcomes;
    for (;;) {
      std::vector<uint64_t> cookies = timers_.FireDue(clock_.Now());
      if (cookies.empty()) return outcomes;
      for (uint64_t cookie : cookies) outcomes.push_back(store_.OnTimer(cookie));
    }
  }

  std::optional<TaskState> StateOf(absl::string_view task_id) {
    absl::StatusOr<TaskInfo> info = store_.Get(task_id);
    if (!info.ok()) return std::nullopt;
    return info->state;
  }

  // The store's count of `state` in `queue` (0 for a queue it does not list).
  int64_t CountOf(absl::string_view queue, TaskState state) {
    for (const QueueCounts& counts : store_.Counts()) {
      if (counts.queue == queue) return counts.by_state[static_cast<int>(state)];
    }
    return 0;
  }

  static std::vector<std::string> IdsOf(const std::vector<LeasedTask>& leased) {
    std::vector<std::string> ids;
    for (const LeasedTask& t : leased) ids.push_back(t.task_id);
    return ids;
  }

  FakeClock clock_{kStart};
  FakeTimers timers_;
  TaskStore store_{clock_, timers_, {.retention = kRetention}};
};

// RetryPolicy::Backoff is min_backoff * 2^(n-1), capped at max_backoff.
TEST(RetryPolicyTest, BackoffDoublesFromMinAndCapsAtMax) {
  const RetryPolicy one_to_five{
      .max_attempts = 10, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(5)};
  EXPECT_EQ(one_to_five.Backoff(1), absl::Seconds(1));
  EXPECT_EQ(one_to_five.Backoff(2), absl::Seconds(2));
  EXPECT_EQ(one_to_five.Backoff(3), absl::Seconds(4));
  EXPECT_EQ(one_to_five.Backoff(4), absl::Seconds(5));
  EXPECT_EQ(one_to_five.Backoff(5), absl::Seconds(5));
  EXPECT_EQ(one_to_five.Backoff(1000), absl::Seconds(5));

  const RetryPolicy defaults;  // 1s .. 300s
  EXPECT_EQ(defaults.Backoff(9), absl::Seconds(256));
  EXPECT_EQ(defaults.Backoff(10), absl::Seconds(300));

  const RetryPolicy fine{
      .max_attempts = 5, .min_backoff = absl::Milliseconds(100), .max_backoff = absl::Seconds(300)};
  EXPECT_EQ(fine.Backoff(1), absl::Milliseconds(100));
  EXPECT_EQ(fine.Backoff(11), absl::Milliseconds(102400));
  EXPECT_EQ(fine.Backoff(12), absl::Milliseconds(204800));
  EXPECT_EQ(fine.Backoff(13), absl::Seconds(300));

  const RetryPolicy flat{
      .max_attempts = 3, .min_backoff = absl::Seconds(7), .max_backoff = absl::Seconds(7)};
  EXPECT_EQ(flat.Backoff(1), absl::Seconds(7));
  EXPECT_EQ(flat.Backoff(4), absl::Seconds(7));
}

// TaskStateName spells the states as the API's enum does.
TEST(TaskStateTest, NamesMatchTheApiEnum) {
  EXPECT_EQ(TaskStateName(TaskState::kScheduled), "SCHEDULED");
  EXPECT_EQ(TaskStateName(TaskState::kReady), "READY");
  EXPECT_EQ(TaskStateName(TaskState::kLeased), "LEASED");
  EXPECT_EQ(TaskStateName(TaskState::kSucceeded), "SUCCEEDED");
  EXPECT_EQ(TaskStateName(TaskState::kCancelled), "CANCELLED");
  EXPECT_EQ(TaskStateName(TaskState::kDead), "DEAD");
  EXPECT_TRUE(IsFinal(TaskState::kSucceeded));
  EXPECT_TRUE(IsFinal(TaskState::kCancelled));
  EXPECT_TRUE(IsFinal(TaskState::kDead));
  EXPECT_FALSE(IsFinal(TaskState::kScheduled));
  EXPECT_FALSE(IsFinal(TaskState::kReady));
  EXPECT_FALSE(IsFinal(TaskState::kLeased));
}

// SCHEDULED -> READY exactly at the due time -> LEASED -> SUCCEEDED -> forgotten at the end of
// retention, after which the id is free again.
TEST_F(TaskStoreTest, FullLifeCycleFromScheduleToForgotten) {
  const absl::Time t0 = clock_.Now();
  NewTask task = Task("emails", "welcome-1", "hello", absl::Seconds(10));
  task.headers = {{"trace", "abc"}};
  absl::StatusOr<ScheduleResult> scheduled = store_.Schedule(task);
  ASSERT_TRUE(scheduled.ok()) << scheduled.status();
  EXPECT_EQ(scheduled->task_id, "welcome-1");
  EXPECT_EQ(scheduled->due_time, t0 + absl::Seconds(10));
  EXPECT_TRUE(scheduled->created);

  absl::StatusOr<TaskInfo> info = store_.Get("welcome-1");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->task_id, "welcome-1");
  EXPECT_EQ(info->queue, "emails");
  EXPECT_EQ(info->state, TaskState::kScheduled);
  EXPECT_EQ(info->attempts, 0);
  EXPECT_EQ(info->due_time, t0 + absl::Seconds(10));
  EXPECT_EQ(info->create_time, t0);
  EXPECT_EQ(info->lease_expire_time, std::nullopt);
  EXPECT_EQ(info->finish_time, std::nullopt);
  EXPECT_EQ(info->last_error, "");
  EXPECT_EQ(info->payload_size_bytes, 5);
  EXPECT_EQ(timers_.NextDue(), t0 + absl::Seconds(10));

  // Never early: a millisecond before the due time nothing happens.
  EXPECT_TRUE(Tick(absl::Seconds(10) - kMs).empty());
  EXPECT_EQ(StateOf("welcome-1"), TaskState::kScheduled);
  EXPECT_TRUE(store_.Lease("emails", 10, absl::Seconds(30)).empty());

  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(fired[0].queue, "emails");
  EXPECT_EQ(fired[0].task_id, "welcome-1");
  EXPECT_EQ(fired[0].lateness, absl::ZeroDuration());
  EXPECT_EQ(StateOf("welcome-1"), TaskState::kReady);
  EXPECT_EQ(timers_.size(), 0u);  // READY waits in the ready list, not on a timer

  EXPECT_TRUE(Tick(absl::Seconds(2)).empty());
  const absl::Time lease_time = clock_.Now();
  std::vector<LeasedTask> leased = store_.Lease("emails", 10, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].task_id, "welcome-1");
  EXPECT_EQ(leased[0].queue, "emails");
  EXPECT_EQ(leased[0].payload, "hello");
  EXPECT_EQ(leased[0].headers, (Headers{{"trace", "abc"}}));
  EXPECT_EQ(leased[0].attempt, 1);
  EXPECT_EQ(leased[0].due_time, t0 + absl::Seconds(10));
  EXPECT_FALSE(leased[0].lease_token.empty());
  EXPECT_EQ(leased[0].lease_expire_time, lease_time + absl::Seconds(30));

  info = store_.Get("welcome-1");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, TaskState::kLeased);
  EXPECT_EQ(info->attempts, 1);
  EXPECT_EQ(info->lease_expire_time, lease_time + absl::Seconds(30));
  EXPECT_EQ(info->finish_time, std::nullopt);
  EXPECT_EQ(timers_.NextDue(), lease_time + absl::Seconds(30));

  EXPECT_TRUE(Tick(absl::Seconds(5)).empty());
  const absl::Time ack_time = clock_.Now();
  absl::StatusOr<TaskInfo> acked = store_.Ack("welcome-1", leased[0].lease_token);
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->state, TaskState::kSucceeded);
  EXPECT_EQ(acked->finish_time, ack_time);
  info = store_.Get("welcome-1");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, TaskState::kSucceeded);
  EXPECT_EQ(info->attempts, 1);
  EXPECT_EQ(info->finish_time, ack_time);
  EXPECT_EQ(info->lease_expire_time, std::nullopt);
  EXPECT_EQ(timers_.NextDue(), ack_time + kRetention);  // the lease timer became retention's

  EXPECT_TRUE(Tick(kRetention - kMs).empty());
  EXPECT_EQ(StateOf("welcome-1"), TaskState::kSucceeded);
  fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kForgotten);
  EXPECT_EQ(fired[0].task_id, "welcome-1");
  EXPECT_EQ(fired[0].queue, "emails");
  EXPECT_EQ(store_.Get("welcome-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.size(), 0u);
  EXPECT_EQ(timers_.size(), 0u);

  // The id is free again, even for other content.
  absl::StatusOr<ScheduleResult> reused =
      store_.Schedule(Task("other-queue", "welcome-1", "other payload", absl::Seconds(1)));
  ASSERT_TRUE(reused.ok()) << reused.status();
  EXPECT_TRUE(reused->created);
  EXPECT_EQ(reused->due_time, clock_.Now() + absl::Seconds(1));
  EXPECT_EQ(StateOf("welcome-1"), TaskState::kScheduled);
}

// A timer delivered late makes the task READY with lateness = now - due_time; the task keeps its
// due time.
TEST_F(TaskStoreTest, LatenessIsMeasuredFromTheDueTime) {
  const absl::Time due = clock_.Now() + absl::Seconds(1);
  MustSchedule(Task("q", "late", "p", absl::Seconds(1)));
  std::vector<TimerOutcome> fired = Tick(absl::Milliseconds(3250));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(fired[0].lateness, absl::Milliseconds(2250));
  EXPECT_EQ(LeaseOne("q", absl::Seconds(30)).due_time, due);
}

// A due time in the past (or now) makes the task due now: its timer fires without any advance.
TEST_F(TaskStoreTest, DueTimeInThePastIsDueNow) {
  const absl::Time now = clock_.Now();
  absl::StatusOr<ScheduleResult> past = store_.Schedule(Task("q", "past", "p", -absl::Hours(1)));
  ASSERT_TRUE(past.ok()) << past.status();
  EXPECT_EQ(past->due_time, now);
  EXPECT_EQ(store_.Get("past")->due_time, now);
  absl::StatusOr<ScheduleResult> at_now =
      store_.Schedule(Task("q", "now", "p", absl::ZeroDuration()));
  ASSERT_TRUE(at_now.ok());
  EXPECT_EQ(at_now->due_time, now);

  std::vector<TimerOutcome> fired = FireNow();
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(fired[0].task_id, "past");
  EXPECT_EQ(fired[0].lateness, absl::ZeroDuration());
  EXPECT_EQ(fired[1].kind, Kind::kReady);
  EXPECT_EQ(fired[1].task_id, "now");
  EXPECT_EQ(IdsOf(store_.Lease("q", 10, absl::Seconds(1))),
            (std::vector<std::string>{"past", "now"}));
}

// Generated ids are ULIDs: 26 Crockford base32 digits, unique, the first 10 the creation time in
// Unix milliseconds, so that ids made at different milliseconds sort by creation time.
TEST_F(TaskStoreTest, GeneratedIdsAre26CharsUniqueAndSortByCreationTime) {
  std::vector<std::string> ids;
  for (int i = 0; i < 500; ++i) {
    clock_.Advance(absl::Milliseconds(1 + i % 7));
    absl::StatusOr<ScheduleResult> r = store_.Schedule(Task("q", "", "p", absl::Hours(1)));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->created);
    ASSERT_EQ(r->task_id.size(), 26u) << r->task_id;
    uint64_t ms = 0;
    for (int k = 0; k < 26; ++k) {
      const size_t digit = kCrockford.find(r->task_id[k]);
      ASSERT_NE(digit, absl::string_view::npos) << r->task_id;
      if (k < 10) ms = ms * 32 + digit;
    }
    EXPECT_EQ(ms, static_cast<uint64_t>(absl::ToUnixMillis(clock_.Now()))) << r->task_id;
    EXPECT_EQ(StateOf(r->task_id), TaskState::kScheduled);
    ids.push_back(r->task_id);
  }
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i - 1], ids[i]);

  // Many ids within one millisecond are still unique.
  std::set<std::string> unique(ids.begin(), ids.end());
  for (int i = 0; i < 2000; ++i) {
    absl::StatusOr<ScheduleResult> r = store_.Schedule(Task("q", "", "p", absl::Hours(1)));
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(unique.insert(r->task_id).second) << r->task_id;
  }
  EXPECT_EQ(unique.size(), 2500u);
  EXPECT_EQ(store_.size(), 2500u);
}

// Repeating Schedule with the same id, queue and payload returns the original result and creates
// nothing; a different payload or queue under that id is ALREADY_EXISTS.
TEST_F(TaskStoreTest, IdempotentScheduleReturnsOriginalResult) {
  const absl::Time due = clock_.Now() + absl::Minutes(1);
  ScheduleResult first = MustSchedule(Task("q", "job-1", "payload", absl::Minutes(1)));
  EXPECT_TRUE(first.created);

  clock_.Advance(absl::Seconds(5));
  absl::StatusOr<ScheduleResult> repeat =
      store_.Schedule(Task("q", "job-1", "payload", absl::Minutes(10)));
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_FALSE(repeat->created);
  EXPECT_EQ(repeat->task_id, "job-1");
  EXPECT_EQ(repeat->due_time, due);

  absl::StatusOr<ScheduleResult> other_payload =
      store_.Schedule(Task("q", "job-1", "another payload", absl::Minutes(1)));
  EXPECT_EQ(other_payload.status().code(), absl::StatusCode::kAlreadyExists);
  absl::StatusOr<ScheduleResult> other_queue =
      store_.Schedule(Task("q2", "job-1", "payload", absl::Minutes(1)));
  EXPECT_EQ(other_queue.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(absl::StrContains(other_queue.status().message(), "job-1")) << other_queue.status();

  EXPECT_EQ(store_.size(), 1u);
  EXPECT_EQ(timers_.size(), 1u);
  EXPECT_EQ(store_.Get("job-1")->due_time, due);
  EXPECT_EQ(store_.Get("job-1")->queue, "q");
  EXPECT_EQ(CountOf("q2", TaskState::kScheduled), 0);
  EXPECT_EQ(CountOf("q", TaskState::kScheduled), 1);
}

// A finished task has dropped its payload but still answers idempotent repeats while it is
// retained: same content -> created=false, other content -> ALREADY_EXISTS.
TEST_F(TaskStoreTest, IdempotentScheduleIsAnsweredWhileFinishedTaskIsRetained) {
  const absl::Time due = clock_.Now();
  ScheduleReady("q", "job-2");
  LeasedTask leased = LeaseOne("q", absl::Seconds(30));
  ASSERT_TRUE(store_.Ack("job-2", leased.lease_token).ok());
  ASSERT_EQ(StateOf("job-2"), TaskState::kSucceeded);

  Tick(absl::Minutes(30));
  absl::StatusOr<ScheduleResult> repeat =
      store_.Schedule(Task("q", "job-2", "payload of job-2", absl::Seconds(1)));
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_FALSE(repeat->created);
  EXPECT_EQ(repeat->due_time, due);
  EXPECT_EQ(StateOf("job-2"), TaskState::kSucceeded);
  EXPECT_EQ(store_.Schedule(Task("q", "job-2", "changed", absl::Seconds(1))).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(
      store_.Schedule(Task("q2", "job-2", "payload of job-2", absl::Seconds(1))).status().code(),
      absl::StatusCode::kAlreadyExists);

  // Once retention ends the id is forgotten and schedules a new task.
  Tick(absl::Minutes(30));
  EXPECT_EQ(store_.Get("job-2").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<ScheduleResult> again =
      store_.Schedule(Task("q", "job-2", "changed", absl::Seconds(1)));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->created);
}

// DESIGN §4: an idempotent repeat "returns the original response", whose due_time is the one
// first scheduled, even after a Nack has moved the task's due time to a retry.
TEST_F(TaskStoreTest, IdempotentScheduleAfterRetryReturnsOriginalDueTime) {
  const absl::Time original_due = clock_.Now() + absl::Seconds(10);
  ScheduleResult first = MustSchedule(Task("q", "job-3", "payload", absl::Seconds(10)));
  ASSERT_EQ(first.due_time, original_due);
  Tick(absl::Seconds(10));
  LeasedTask leased = LeaseOne("q", absl::Seconds(30));
  ASSERT_TRUE(store_.Nack("job-3", leased.lease_token, absl::Minutes(5), "try later").ok());

  absl::StatusOr<ScheduleResult> repeat =
      store_.Schedule(Task("q", "job-3", "payload", absl::Seconds(10)));
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_FALSE(repeat->created);
  EXPECT_EQ(repeat->task_id, "job-3");
  EXPECT_EQ(repeat->due_time, original_due) << "got the retry's due time instead";
}

// Cancel of a SCHEDULED task: CANCELLED at once with finish_time, its due time passes without
// effect, and it is forgotten after retention.
TEST_F(TaskStoreTest, CancelScheduledTaskNeverBecomesReady) {
  MustSchedule(Task("q", "c1", "p", absl::Seconds(10)));
  Tick(absl::Seconds(3));
  const absl::Time cancel_time = clock_.Now();
  absl::StatusOr<TaskInfo> cancelled = store_.Cancel("c1");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state, TaskState::kCancelled);
  EXPECT_EQ(cancelled->finish_time, cancel_time);
  EXPECT_EQ(cancelled->attempts, 0);
  EXPECT_EQ(timers_.NextDue(), cancel_time + kRetention);

  EXPECT_TRUE(Tick(absl::Seconds(7)).empty());
  EXPECT_EQ(StateOf("c1"), TaskState::kCancelled);
  EXPECT_TRUE(store_.Lease("q", 10, absl::Seconds(30)).empty());
  EXPECT_EQ(CountOf("q", TaskState::kCancelled), 1);
  EXPECT_EQ(CountOf("q", TaskState::kScheduled), 0);

  std::vector<TimerOutcome> fired = Tick(kRetention - absl::Seconds(7));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kForgotten);
  EXPECT_EQ(store_.Get("c1").status().code(), absl::StatusCode::kNotFound);
}

// Cancelled READY tasks leave the ready list wherever they are in it (head, middle, tail) and are
// never leased; the list stays intact for the others and for later arrivals.
TEST_F(TaskStoreTest, CancelReadyTaskIsNeverLeased) {
  for (const char* id : {"a", "b", "c", "d"}) ScheduleReady("q", id);
  ASSERT_EQ(CountOf("q", TaskState::kReady), 4);

  for (const char* id : {"b", "a", "d"}) {
    absl::StatusOr<TaskInfo> cancelled = store_.Cancel(id);
    ASSERT_TRUE(cancelled.ok()) << cancelled.status();
    EXPECT_EQ(cancelled->state, TaskState::kCancelled);
  }
  EXPECT_EQ(CountOf("q", TaskState::kReady), 1);
  EXPECT_EQ(CountOf("q", TaskState::kCancelled), 3);
  EXPECT_EQ(IdsOf(store_.Lease("q", 10, absl::Seconds(30))), (std::vector<std::string>{"c"}));

  ScheduleReady("q", "e");
  ScheduleReady("q", "f");
  ASSERT_TRUE(store_.Cancel("f").ok());
  EXPECT_EQ(IdsOf(store_.Lease("q", 10, absl::Seconds(30))), (std::vector<std::string>{"e"}));
  EXPECT_TRUE(store_.Lease("q", 10, absl::Seconds(30)).empty());
  for (const char* id : {"a", "b", "d", "f"}) EXPECT_EQ(StateOf(id), TaskState::kCancelled);
}

// Cancel only applies to SCHEDULED and READY: LEASED and finished tasks are FAILED_PRECONDITION
// (and unchanged), unknown ids NOT_FOUND.
TEST_F(TaskStoreTest, CancelOfLeasedOrFinishedTaskIsFailedPrecondition) {
  ScheduleReady("q", "leased");
  LeasedTask leased = LeaseOne("q", absl::Seconds(30));
  ScheduleReady("q", "succeeded");
  ASSERT_TRUE(store_.Ack("succeeded", LeaseOne("q", absl::Seconds(30)).lease_token).ok());
  MustSchedule(Task("q", "cancelled", "p", absl::Seconds(30)));
  ASSERT_TRUE(store_.Cancel("cancelled").ok());
  ScheduleReady("q", "dead", RetryPolicy{.max_attempts = 1});
  ASSERT_TRUE(
      store_.Nack("dead", LeaseOne("q", absl::Seconds(30)).lease_token, std::nullopt, "no").ok());

  const std::pair<const char*, TaskState> cases[] = {{"leased", TaskState::kLeased},
                                                     {"succeeded", TaskState::kSucceeded},
                                                     {"cancelled", TaskState::kCancelled},
                                                     {"dead", TaskState::kDead}};
  for (const auto& [id, state] : cases) {
    absl::StatusOr<TaskInfo> r = store_.Cancel(id);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << id;
    EXPECT_TRUE(absl::StrContains(r.status().message(), TaskStateName(state))) << r.status();
    EXPECT_EQ(StateOf(id), state) << id;
  }
  EXPECT_EQ(store_.Cancel("unknown").status().code(), absl::StatusCode::kNotFound);
  // The lease is untouched: it can still be acknowledged.
  EXPECT_TRUE(store_.Ack("leased", leased.lease_token).ok());
}

// Reschedule of a SCHEDULED task moves its timer: the old due time passes without effect, a cookie
// of the old arming is stale, and the task becomes READY exactly at the new due time.
TEST_F(TaskStoreTest, RescheduleScheduledTaskMovesItsDueTime) {
  const absl::Time t0 = clock_.Now();
  MustSchedule(Task("q", "r1", "p", absl::Seconds(10)));
  std::vector<uint64_t> old_cookies = timers_.ArmedCookies();
  ASSERT_EQ(old_cookies.size(), 1u);

  absl::StatusOr<TaskInfo> moved = store_.Reschedule("r1", t0 + absl::Seconds(20));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->state, TaskState::kScheduled);
  EXPECT_EQ(moved->due_time, t0 + absl::Seconds(20));
  EXPECT_EQ(timers_.size(), 1u);
  EXPECT_EQ(timers_.NextDue(), t0 + absl::Seconds(20));

  EXPECT_TRUE(Tick(absl::Seconds(10)).empty());
  // The old arming's cookie, delivered late (a timer that fired as it was moved), does nothing.
  TimerOutcome stale = store_.OnTimer(old_cookies[0]);
  EXPECT_EQ(stale.kind, Kind::kStale);
  EXPECT_EQ(StateOf("r1"), TaskState::kScheduled);
  EXPECT_TRUE(store_.Lease("q", 10, absl::Seconds(30)).empty());

  EXPECT_TRUE(Tick(absl::Seconds(10) - kMs).empty());
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(fired[0].lateness, absl::ZeroDuration());
  EXPECT_EQ(LeaseOne("q", absl::Seconds(30)).due_time, t0 + absl::Seconds(20));
}

// Reschedule of a READY task takes it out of the ready list (SCHEDULED again, not leasable) until
// its new due time; a due time in the past means now. Other states are FAILED_PRECONDITION.
TEST_F(TaskStoreTest, RescheduleReadyTaskLeavesTheReadyList) {
  ScheduleReady("q", "r2");
  ScheduleReady("q", "r3");
  const absl::Time now = clock_.Now();
  absl::StatusOr<TaskInfo> moved = store_.Reschedule("r2", now + absl::Seconds(5));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->state, TaskState::kScheduled);
  EXPECT_EQ(moved->due_time, now + absl::Seconds(5));
  EXPECT_EQ(CountOf("q", TaskState::kReady), 1);
  EXPECT_EQ(CountOf("q", TaskState::kScheduled), 1);
  EXPECT_EQ(IdsOf(store_.Lease("q", 10, absl::Seconds(30))), (std::vector<std::string>{"r3"}));

  EXPECT_TRUE(Tick(absl::Seconds(5) - kMs).empty());
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(fired[0].task_id, "r2");
  LeasedTask leased = LeaseOne("q", absl::Seconds(30));
  EXPECT_EQ(leased.task_id, "r2");
  EXPECT_EQ(leased.attempt, 1);

  EXPECT_EQ(store_.Reschedule("r2", now).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Reschedule("nope", now).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_.Ack("r2", leased.lease_token).ok());
  EXPECT_EQ(store_.Reschedule("r2", now).status().code(), absl::StatusCode::kFailedPrecondition);

  // Into the past: due now.
  MustSchedule(Task("q", "r4", "p", absl::Hours(1)));
  moved = store_.Reschedule("r4", clock_.Now() - absl::Hours(2));
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved->due_time, clock_.Now());
  fired = FireNow();
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].task_id, "r4");
  EXPECT_EQ(fired[0].kind, Kind::kReady);
}

// Lease hands out at most max_tasks per call, oldest READY first (by when each became ready, not
// by creation), and only tasks of the requested queue.
TEST_F(TaskStoreTest, LeaseRespectsMaxTasksFifoOrderAndQueue) {
  MustSchedule(Task("q", "c", "p", absl::Seconds(3)));
  MustSchedule(Task("q", "a", "p", absl::Seconds(1)));
  MustSchedule(Task("q", "d", "p", absl::Seconds(4)));
  MustSchedule(Task("q", "b", "p", absl::Seconds(2)));
  MustSchedule(Task("other", "x", "p", absl::Seconds(1)));
  for (int i = 0; i < 4; ++i) Tick(absl::Seconds(1));
  ASSERT_EQ(CountOf("q", TaskState::kReady), 4);

  EXPECT_TRUE(store_.Lease("q", 0, absl::Seconds(30)).empty());
  EXPECT_TRUE(store_.Lease("no-such-queue", 10, absl::Seconds(30)).empty());
  EXPECT_EQ(IdsOf(store_.Lease("q", 2, absl::Seconds(30))), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(IdsOf(store_.Lease("q", 1, absl::Seconds(30))), (std::vector<std::string>{"c"}));
  std::vector<LeasedTask> rest = store_.Lease("q", 10, absl::Seconds(30));
  EXPECT_EQ(IdsOf(rest), (std::vector<std::string>{"d"}));
  for (const LeasedTask& t : rest) EXPECT_EQ(t.queue, "q");
  EXPECT_TRUE(store_.Lease("q", 10, absl::Seconds(30)).empty());
  EXPECT_EQ(CountOf("q", TaskState::kLeased), 4);
  EXPECT_EQ(CountOf("other", TaskState::kReady), 1);

  std::vector<LeasedTask> other = store_.Lease("other", 10, absl::Seconds(30));
  EXPECT_EQ(IdsOf(other), (std::vector<std::string>{"x"}));
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0].queue, "other");
}

// Every leased task gets its own lease token.
TEST_F(TaskStoreTest, LeaseTokensAreDistinct) {
  for (int i = 0; i < 50; ++i) ScheduleReady("q", absl::StrCat("t", i));
  std::vector<LeasedTask> leased = store_.Lease("q", 50, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 50u);
  std::set<std::string> tokens;
  for (const LeasedTask& t : leased) {
    EXPECT_FALSE(t.lease_token.empty());
    tokens.insert(t.lease_token);
  }
  EXPECT_EQ(tokens.size(), 50u);
}

// Nack with a retry_delay: SCHEDULED again at exactly now + retry_delay, last_error = the error;
// the next hand-out is attempt 2.
TEST_F(TaskStoreTest, NackWithRetryDelayRetriesAfterThatDelay) {
  ScheduleReady("q", "n1");
  LeasedTask leased = LeaseOne("q", absl::Seconds(30));
  Tick(absl::Seconds(2));
  const absl::Time nack_time = clock_.Now();
  absl::StatusOr<TaskInfo> nacked =
      store_.Nack("n1", leased.lease_token, absl::Seconds(7), "smtp: 451 try again");
  ASSERT_TRUE(nacked.ok()) << nacked.status();
  EXPECT_EQ(nacked->state, TaskState::kScheduled);
  EXPECT_EQ(nacked->attempts, 1);
  EXPECT_EQ(nacked->due_time, nack_time + absl::Seconds(7));
  EXPECT_EQ(nacked->last_error, "smtp: 451 try again");
  EXPECT_EQ(nacked->lease_expire_time, std::nullopt);
  EXPECT_EQ(timers_.NextDue(), nack_time + absl::Seconds(7));  // the lease timer is gone

  EXPECT_TRUE(Tick(absl::Seconds(7) - kMs).empty());
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(fired[0].lateness, absl::ZeroDuration());
  LeasedTask second = LeaseOne("q", absl::Seconds(30));
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(second.due_time, nack_time + absl::Seconds(7));
  EXPECT_EQ(store_.Get("n1")->last_error, "smtp: 451 try again");

  // A zero retry_delay is due at once.
  absl::StatusOr<TaskInfo> now_retry =
      store_.Nack("n1", second.lease_token, absl::ZeroDuration(), "again");
  ASSERT_TRUE(now_retry.ok());
  EXPECT_EQ(now_retry->due_time, clock_.Now());
  fired = FireNow();
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
}

// Nack without a retry_delay waits min_backoff * 2^(n-1) capped at max_backoff after the n-th
// attempt: 1s, 2s, 4s, 5s for min 1s, max 5s.
TEST_F(TaskStoreTest, NackWithoutRetryDelayBacksOffExponentially) {
  ScheduleReady(
      "q", "n2",
      RetryPolicy{
          .max_attempts = 10, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(5)});
  const absl::Duration expected_backoff[] = {absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                             absl::Seconds(5)};
  for (int attempt = 1; attempt <= 4; ++attempt) {
    SCOPED_TRACE(absl::StrCat("attempt ", attempt));
    LeasedTask leased = LeaseOne("q", absl::Seconds(30));
    EXPECT_EQ(leased.attempt, attempt);
    Tick(absl::Milliseconds(250));
    const absl::Time nack_time = clock_.Now();
    const std::string error = absl::StrCat("failure ", attempt);
    absl::StatusOr<TaskInfo> nacked = store_.Nack("n2", leased.lease_token, std::nullopt, error);
    ASSERT_TRUE(nacked.ok()) << nacked.status();
    EXPECT_EQ(nacked->state, TaskState::kScheduled);
    EXPECT_EQ(nacked->attempts, attempt);
    EXPECT_EQ(nacked->due_time, nack_time + expected_backoff[attempt - 1]);
    EXPECT_EQ(nacked->last_error, error);

    EXPECT_TRUE(Tick(expected_backoff[attempt - 1] - kMs).empty());
    EXPECT_EQ(StateOf("n2"), TaskState::kScheduled);
    std::vector<TimerOutcome> fired = Tick(kMs);
    ASSERT_EQ(fired.size(), 1u);
    EXPECT_EQ(fired[0].kind, Kind::kReady);
  }
}

// The Nack of the max_attempts-th hand-out makes the task DEAD (kept for inspection, with the
// error), and it is forgotten after retention.
TEST_F(TaskStoreTest, NackOnLastAttemptMakesTaskDead) {
  ScheduleReady("q", "n3", RetryPolicy{.max_attempts = 2});
  LeasedTask first = LeaseOne("q", absl::Seconds(30));
  absl::StatusOr<TaskInfo> nacked =
      store_.Nack("n3", first.lease_token, absl::ZeroDuration(), "first");
  ASSERT_TRUE(nacked.ok());
  EXPECT_EQ(nacked->state, TaskState::kScheduled);
  FireNow();
  LeasedTask second = LeaseOne("q", absl::Seconds(30));
  EXPECT_EQ(second.attempt, 2);
  Tick(absl::Seconds(1));
  const absl::Time dead_time = clock_.Now();
  nacked = store_.Nack("n3", second.lease_token, absl::Seconds(1), "final failure");
  ASSERT_TRUE(nacked.ok()) << nacked.status();
  EXPECT_EQ(nacked->state, TaskState::kDead);
  EXPECT_EQ(nacked->attempts, 2);
  EXPECT_EQ(nacked->last_error, "final failure");
  EXPECT_EQ(nacked->finish_time, dead_time);
  EXPECT_EQ(nacked->lease_expire_time, std::nullopt);
  EXPECT_EQ(CountOf("q", TaskState::kDead), 1);
  EXPECT_EQ(CountOf("q", TaskState::kLeased), 0);

  // The retry_delay is not applied to a DEAD task: it never becomes READY again.
  EXPECT_TRUE(Tick(kRetention - kMs).empty());
  EXPECT_EQ(StateOf("n3"), TaskState::kDead);
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kForgotten);
  EXPECT_EQ(StateOf("n3"), std::nullopt);
}

// A lease that expires with attempts left: kLeaseRetry exactly at the expiry, SCHEDULED for the
// backoff with a last_error naming the lease, then READY and handed out as attempt 2.
TEST_F(TaskStoreTest, LeaseExpiryWithAttemptsLeftRetries) {
  ScheduleReady(
      "q", "e1",
      RetryPolicy{
          .max_attempts = 3, .min_backoff = absl::Seconds(2), .max_backoff = absl::Seconds(60)});
  const absl::Time lease_time = clock_.Now();
  LeasedTask first = LeaseOne("q", absl::Seconds(30));
  EXPECT_EQ(first.lease_expire_time, lease_time + absl::Seconds(30));

  EXPECT_TRUE(Tick(absl::Seconds(30) - kMs).empty());
  EXPECT_EQ(StateOf("e1"), TaskState::kLeased);
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseRetry);
  EXPECT_EQ(fired[0].task_id, "e1");
  EXPECT_EQ(fired[0].queue, "q");

  absl::StatusOr<TaskInfo> info = store_.Get("e1");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, TaskState::kScheduled);
  EXPECT_EQ(info->attempts, 1);
  EXPECT_EQ(info->due_time, clock_.Now() + absl::Seconds(2));
  EXPECT_TRUE(absl::StrContains(info->last_error, "lease")) << info->last_error;
  EXPECT_EQ(info->lease_expire_time, std::nullopt);

  EXPECT_TRUE(Tick(absl::Seconds(2) - kMs).empty());
  fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  LeasedTask second = LeaseOne("q", absl::Seconds(30));
  EXPECT_EQ(second.task_id, "e1");
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(second.payload, "payload of e1");
  EXPECT_NE(second.lease_token, first.lease_token);
}

// A lease that expires on the max_attempts-th hand-out makes the task DEAD (kLeaseDead), with a
// last_error that says the lease expired.
TEST_F(TaskStoreTest, LeaseExpiryOnLastAttemptMakesTaskDead) {
  ScheduleReady("q", "e2", RetryPolicy{.max_attempts = 1});
  LeaseOne("q", absl::Seconds(10));
  EXPECT_TRUE(Tick(absl::Seconds(10) - kMs).empty());
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseDead);
  EXPECT_EQ(fired[0].task_id, "e2");
  EXPECT_EQ(fired[0].queue, "q");

  absl::StatusOr<TaskInfo> info = store_.Get("e2");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, TaskState::kDead);
  EXPECT_EQ(info->attempts, 1);
  EXPECT_EQ(info->finish_time, clock_.Now());
  EXPECT_TRUE(absl::StrContains(info->last_error, "lease expired")) << info->last_error;
  EXPECT_EQ(CountOf("q", TaskState::kDead), 1);
  EXPECT_EQ(timers_.NextDue(), clock_.Now() + kRetention);
}

// After a lease expired and the task was leased again, the old token is refused for Ack, Nack and
// ExtendLease (FAILED_PRECONDITION) without disturbing the new lease, which still works.
TEST_F(TaskStoreTest, StaleLeaseTokenIsRefusedAfterReLease) {
  ScheduleReady("q", "s1", RetryPolicy{.max_attempts = 3});
  LeasedTask first = LeaseOne("q", absl::Seconds(10));
  std::vector<TimerOutcome> fired = Tick(absl::Seconds(10));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseRetry);
  // While the task waits for its retry, the old token is refused too.
  EXPECT_EQ(store_.Ack("s1", first.lease_token).status().code(),
            absl::StatusCode::kFailedPrecondition);

  Tick(absl::Seconds(1));  // the default min_backoff
  LeasedTask second = LeaseOne("q", absl::Seconds(10));
  ASSERT_EQ(second.task_id, "s1");
  EXPECT_EQ(second.attempt, 2);
  ASSERT_NE(second.lease_token, first.lease_token);

  EXPECT_EQ(store_.Ack("s1", first.lease_token).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Nack("s1", first.lease_token, std::nullopt, "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.ExtendLease("s1", first.lease_token, absl::Hours(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<TaskInfo> info = store_.Get("s1");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, TaskState::kLeased);
  EXPECT_EQ(info->attempts, 2);
  EXPECT_EQ(info->lease_expire_time, second.lease_expire_time);

  EXPECT_TRUE(store_.Ack("s1", second.lease_token).ok());
  EXPECT_EQ(StateOf("s1"), TaskState::kSucceeded);
}

// Ack (and Nack, ExtendLease) of a task that is not LEASED, or under a token that is not its
// lease's, is FAILED_PRECONDITION and changes nothing.
TEST_F(TaskStoreTest, AckOfTaskNotLeasedIsFailedPrecondition) {
  MustSchedule(Task("q", "scheduled", "p", absl::Hours(1)));
  ScheduleReady("q", "ready");
  EXPECT_EQ(store_.Ack("scheduled", "token").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Ack("ready", "token").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Ack("ready", "").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Nack("ready", "", std::nullopt, "e").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.ExtendLease("ready", "", absl::Seconds(5)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StateOf("scheduled"), TaskState::kScheduled);
  EXPECT_EQ(StateOf("ready"), TaskState::kReady);
  EXPECT_EQ(store_.Get("ready")->last_error, "");

  LeasedTask leased = LeaseOne("q", absl::Seconds(30));
  EXPECT_EQ(store_.Ack("ready", "not-the-token").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Ack("ready", "").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StateOf("ready"), TaskState::kLeased);
  EXPECT_TRUE(store_.Ack("ready", leased.lease_token).ok());
  // A second Ack of the same lease: the task is SUCCEEDED, not LEASED.
  absl::StatusOr<TaskInfo> again = store_.Ack("ready", leased.lease_token);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(again.status().message(), "SUCCEEDED")) << again.status();
  EXPECT_EQ(store_.Nack("ready", leased.lease_token, std::nullopt, "e").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StateOf("ready"), TaskState::kSucceeded);
}

// Ack, Nack and ExtendLease of an id the store does not know are NOT_FOUND.
TEST_F(TaskStoreTest, AckNackExtendLeaseOfUnknownTaskAreNotFound) {
  EXPECT_EQ(store_.Ack("ghost", "token").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Nack("ghost", "token", absl::Seconds(1), "e").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.ExtendLease("ghost", "token", absl::Seconds(1)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Get("ghost").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Cancel("ghost").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Reschedule("ghost", clock_.Now()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.size(), 0u);
}

// ExtendLease sets the expiry to now + lease_duration: the old expiry passes without effect and
// the new one expires the lease.
TEST_F(TaskStoreTest, ExtendLeaseMovesTheExpiry) {
  ScheduleReady("q", "x1");
  const absl::Time lease_time = clock_.Now();
  LeasedTask leased = LeaseOne("q", absl::Seconds(10));
  Tick(absl::Seconds(5));
  absl::StatusOr<absl::Time> extended =
      store_.ExtendLease("x1", leased.lease_token, absl::Seconds(20));
  ASSERT_TRUE(extended.ok()) << extended.status();
  EXPECT_EQ(*extended, lease_time + absl::Seconds(25));
  EXPECT_EQ(store_.Get("x1")->lease_expire_time, lease_time + absl::Seconds(25));
  EXPECT_EQ(timers_.size(), 1u);

  EXPECT_TRUE(Tick(absl::Seconds(5)).empty());  // the old expiry
  EXPECT_EQ(StateOf("x1"), TaskState::kLeased);
  EXPECT_TRUE(Tick(absl::Seconds(15) - kMs).empty());
  EXPECT_EQ(StateOf("x1"), TaskState::kLeased);
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseRetry);
  EXPECT_EQ(StateOf("x1"), TaskState::kScheduled);
  EXPECT_EQ(store_.ExtendLease("x1", leased.lease_token, absl::Seconds(20)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// An extension may also shorten the lease: the expiry is now + lease_duration, whatever it was.
TEST_F(TaskStoreTest, ExtendLeaseCanShortenTheLease) {
  ScheduleReady("q", "x2");
  LeasedTask leased = LeaseOne("q", absl::Minutes(10));
  absl::StatusOr<absl::Time> shortened =
      store_.ExtendLease("x2", leased.lease_token, absl::Seconds(1));
  ASSERT_TRUE(shortened.ok());
  EXPECT_EQ(*shortened, clock_.Now() + absl::Seconds(1));
  std::vector<TimerOutcome> fired = Tick(absl::Seconds(1));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseRetry);
}

// Counts() reports, per queue, exactly how many tasks are in each state after a mix of operations,
// and follows timers (ready, lease expiry, forgetting).
TEST_F(TaskStoreTest, CountsPerQueueAndStateAreExact) {
  ScheduleReady("a", "a-leased");
  LeaseOne("a", absl::Hours(1));
  ScheduleReady("a", "a-succeeded");
  ASSERT_TRUE(store_.Ack("a-succeeded", LeaseOne("a", absl::Hours(1)).lease_token).ok());
  ScheduleReady("a", "a-dead", RetryPolicy{.max_attempts = 1});
  ASSERT_TRUE(
      store_.Nack("a-dead", LeaseOne("a", absl::Hours(1)).lease_token, std::nullopt, "e").ok());
  ScheduleReady("a", "a-ready");
  MustSchedule(Task("a", "a-scheduled", "p", absl::Hours(1)));
  MustSchedule(Task("a", "a-cancelled", "p", absl::Hours(1)));
  ASSERT_TRUE(store_.Cancel("a-cancelled").ok());

  MustSchedule(Task("b", "b-1", "p", absl::Hours(1)));
  MustSchedule(Task("b", "b-2", "p", absl::Hours(1)));
  ScheduleReady("b", "b-cancelled");
  ASSERT_TRUE(store_.Cancel("b-cancelled").ok());
  ScheduleReady("b", "b-retry", RetryPolicy{.max_attempts = 3});
  LeaseOne("b", absl::Seconds(1));
  std::vector<TimerOutcome> fired = Tick(absl::Seconds(1));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseRetry);

  using Counts = std::array<int64_t, kTaskStateCount>;
  // Index:           -, SCHEDULED, READY, LEASED, SUCCEEDED, CANCELLED, DEAD
  const Counts a_now = {0, 1, 1, 1, 1, 1, 1};
  const Counts b_now = {0, 3, 0, 0, 0, 1, 0};
  std::map<std::string, Counts> got;
  for (const QueueCounts& c : store_.Counts()) got[c.queue] = c.by_state;
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(got["a"], a_now);
  EXPECT_EQ(got["b"], b_now);
  EXPECT_EQ(store_.size(), 10u);

  // An hour later: finished tasks are forgotten, the scheduled ones READY (b-retry since 1s
  // later), and a-leased's lease has expired into a retry.
  Tick(kRetention);
  const Counts a_later = {0, 1, 2, 0, 0, 0, 0};
  const Counts b_later = {0, 0, 3, 0, 0, 0, 0};
  got.clear();
  for (const QueueCounts& c : store_.Counts()) got[c.queue] = c.by_state;
  EXPECT_EQ(got["a"], a_later);
  EXPECT_EQ(got["b"], b_later);
  EXPECT_EQ(store_.size(), 6u);
  EXPECT_EQ(StateOf("a-leased"), TaskState::kScheduled);
}

// Cookies that are not the store's (the external bit, unknown slots) and cookies of a forgotten
// task whose slot has been reused are stale: nothing happens to the new task.
TEST_F(TaskStoreTest, ForeignAndOutdatedCookiesAreStale) {
  MustSchedule(Task("q", "old", "p", absl::ZeroDuration()));
  const std::vector<uint64_t> due_cookie = timers_.ArmedCookies();
  ASSERT_EQ(due_cookie.size(), 1u);
  FireNow();
  ASSERT_TRUE(store_.Cancel("old").ok());
  const std::vector<uint64_t> retention_cookie = timers_.ArmedCookies();
  ASSERT_EQ(retention_cookie.size(), 1u);
  Tick(kRetention);
  ASSERT_EQ(StateOf("old"), std::nullopt);

  MustSchedule(Task("q", "new", "p", absl::Seconds(10)));
  const std::vector<uint64_t> new_cookie = timers_.ArmedCookies();
  ASSERT_EQ(new_cookie.size(), 1u);
  for (uint64_t cookie :
       {due_cookie[0], retention_cookie[0], new_cookie[0] | TaskStore::kExternalCookieBit,
        ~uint64_t{0}, (uint64_t{12345} << 32) | 1, new_cookie[0] + 1}) {
    TimerOutcome outcome = store_.OnTimer(cookie);
    EXPECT_EQ(outcome.kind, Kind::kStale) << cookie;
  }
  EXPECT_EQ(StateOf("new"), TaskState::kScheduled);
  EXPECT_TRUE(store_.Lease("q", 10, absl::Seconds(1)).empty());
  // The real cookie still works, once: a second delivery is stale.
  EXPECT_EQ(store_.OnTimer(new_cookie[0]).kind, Kind::kReady);
  EXPECT_EQ(store_.OnTimer(new_cookie[0]).kind, Kind::kStale);
  EXPECT_EQ(CountOf("q", TaskState::kReady), 1);
}

// Every non-READY task holds exactly one armed timer, and destroying the store disarms them all.
TEST_F(TaskStoreTest, DestructorDisarmsEveryTimer) {
  FakeTimers timers;
  {
    TaskStore store(clock_, timers, {.retention = kRetention});
    NewTask scheduled = Task("q", "s", "p", absl::Hours(1));
    ASSERT_TRUE(store.Schedule(scheduled).ok());
    for (const char* id : {"r", "l", "done"}) {
      ASSERT_TRUE(store.Schedule(Task("q", id, "p", absl::ZeroDuration())).ok());
    }
    for (uint64_t cookie : timers.FireDue(clock_.Now())) store.OnTimer(cookie);
    std::vector<LeasedTask> leased = store.Lease("q", 2, absl::Seconds(30));  // r, l
    ASSERT_EQ(leased.size(), 2u);
    ASSERT_TRUE(store.Ack(leased[0].task_id, leased[0].lease_token).ok());
    EXPECT_EQ(timers.size(), 3u);  // s (due), l (lease), r (retention); done is READY
  }
  EXPECT_EQ(timers.size(), 0u);
}

// Producers, consumers and the tick thread may use the store at once: every task is handed out
// and acknowledged exactly once.
TEST_F(TaskStoreTest, ConcurrentProducersConsumersAndTicksLoseNoTask) {
  constexpr int kProducers = 4;
  constexpr int kTasksPerProducer = 250;
  constexpr int kTotal = kProducers * kTasksPerProducer;
  std::atomic<int> acked{0};
  absl::Mutex seen_mu;
  std::map<std::string, int> acks_by_id;  // guarded by seen_mu

  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kTasksPerProducer; ++i) {
        absl::StatusOr<ScheduleResult> r = store_.Schedule(
            Task("q", absl::StrCat("p", p, "-", i), "payload", absl::Milliseconds(i % 5)));
        EXPECT_TRUE(r.ok()) << r.status();
      }
    });
  }
  for (int c = 0; c < 3; ++c) {
    threads.emplace_back([&] {
      while (acked.load() < kTotal) {
        std::vector<LeasedTask> leased = store_.Lease("q", 8, absl::Hours(10));
        if (leased.empty()) std::this_thread::yield();
        for (const LeasedTask& t : leased) {
          EXPECT_EQ(t.attempt, 1);
          EXPECT_TRUE(store_.Ack(t.task_id, t.lease_token).ok());
          absl::MutexLock lock(&seen_mu);
          ++acks_by_id[t.task_id];
          acked.fetch_add(1);
        }
      }
    });
  }
  threads.emplace_back([&] {
    while (acked.load() < kTotal) {
      Tick(kMs);
      std::this_thread::yield();
    }
  });
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(acked.load(), kTotal);
  EXPECT_EQ(acks_by_id.size(), static_cast<size_t>(kTotal));
  for (const auto& [id, n] : acks_by_id) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(CountOf("q", TaskState::kSucceeded), kTotal);
  EXPECT_EQ(CountOf("q", TaskState::kReady), 0);
  EXPECT_EQ(CountOf("q", TaskState::kScheduled), 0);
}

// ---------------------------------------------------------------------------------------------
// Randomized model test.

// What the reference model knows of a task.
struct ModelTask {
  std::string queue;
  std::string payload;
  TaskState state = TaskState::kScheduled;
  int32_t attempts = 0;
  RetryPolicy retry_policy;
  absl::Time due_time;
  absl::Time lease_expire_time;
  absl::Time finish_time;
  std::string lease_token;
};

// The model's backoff, min_backoff * 2^(n-1) capped at max_backoff, computed on its own.
absl::Duration ModelBackoff(const RetryPolicy& policy, int32_t failed_attempts) {
  const int64_t factor = int64_t{1} << std::min(failed_attempts - 1, 30);
  return std::min(policy.min_backoff * factor, policy.max_backoff);
}

class ReferenceModelRun {
 public:
  ReferenceModelRun(FakeClock& clock, FakeTimers& timers, TaskStore& store,
                    absl::Duration retention, uint64_t seed)
      : clock_(clock), timers_(timers), store_(store), retention_(retention), rng_(seed) {}

  void Run(int ops) {
    for (int op = 0; op < ops; ++op) {
      op_ = op;
      const int64_t kind = Uniform(0, 99);
      if (kind < 25) {
        DoSchedule();
      } else if (kind < 31) {
        DoCancel();
      } else if (kind < 35) {
        DoReschedule();
      } else if (kind < 52) {
        DoLease();
      } else if (kind < 62) {
        DoAckOrNack(/*ack=*/true);
      } else if (kind < 70) {
        DoAckOrNack(/*ack=*/false);
      } else if (kind < 75) {
        DoExtendLease();
      } else {
        DoTick();
      }
      if (op % 250 == 0) CheckEverything();
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << "stopped at op " << op << " (seed-determined), now "
                      << absl::FormatTime(clock_.Now());
        return;
      }
    }
    CheckEverything();
  }

  std::map<std::string, int64_t> stats;  // how often each transition happened

 private:
  int64_t Uniform(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng_() % static_cast<uint64_t>(hi - lo + 1));
  }
  const std::string& AnyOf(const std::vector<std::string>& v) {
    return v[static_cast<size_t>(Uniform(0, static_cast<int64_t>(v.size()) - 1))];
  }

  // Any id: mostly live ones, sometimes forgotten or never used ones.
  std::string PickId() {
    const int64_t r = Uniform(0, 9);
    if (r < 7 && !ids_.empty()) return AnyOf(ids_);
    if (r < 8 && !forgotten_.empty()) return AnyOf(forgotten_);
    return absl::StrCat("id-", Uniform(0, 99));
  }

  void AddTask(const std::string& id, ModelTask task) {
    model_.emplace(id, std::move(task));
    ids_.push_back(id);
  }
  void ForgetTask(const std::string& id) {
    model_.erase(id);
    auto it = std::find(ids_.begin(), ids_.end(), id);
    *it = ids_.back();
    ids_.pop_back();
    forgotten_.push_back(id);
  }
  void RemoveFromReady(const std::string& id, const std::string& queue) {
    std::deque<std::string>& ready = ready_[queue];
    auto it = std::find(ready.begin(), ready.end(), id);
    EXPECT_NE(it, ready.end()) << id;
    if (it != ready.end()) ready.erase(it);
  }
  void Finish(ModelTask& m, TaskState state) {
    m.state = state;
    m.finish_time = clock_.Now();
    m.lease_token.clear();
  }

  void DoSchedule() {
    const absl::Time now = clock_.Now();
    std::string id;
    const int64_t id_kind = Uniform(0, 9);
    bool repeat_same_content = false;
    if (id_kind < 5) {
      id = "";  // the store makes one
    } else if (id_kind < 7 && !ids_.empty()) {
      id = AnyOf(ids_);
      repeat_same_content = Uniform(0, 1) == 0;
    } else {
      id = absl::StrCat("id-", Uniform(0, 99));
    }
    NewTask task;
    task.task_id = id;
    task.queue = absl::StrCat("q", Uniform(0, 2));
    task.payload = absl::StrCat("p", Uniform(0, 2));
    if (repeat_same_content) {
      task.queue = model_.at(id).queue;
      task.payload = model_.at(id).payload;
    }
    task.due_time = now + absl::Milliseconds(Uniform(-2000, 10000));
    task.retry_policy.max_attempts = static_cast<int32_t>(Uniform(1, 4));
    task.retry_policy.min_backoff = absl::Milliseconds(Uniform(100, 2000));
    task.retry_policy.max_backoff =
        task.retry_policy.min_backoff + absl::Milliseconds(Uniform(0, 4000));
    const NewTask sent = task;

    absl::StatusOr<ScheduleResult> r = store_.Schedule(std::move(task));
    auto it = id.empty() ? model_.end() : model_.find(id);
    if (it != model_.end()) {
      if (it->second.queue == sent.queue && it->second.payload == sent.payload) {
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_FALSE(r->created) << id;
        EXPECT_EQ(r->task_id, id);
        // (Which due_time a repeat returns is IdempotentScheduleAfterRetryReturnsOriginalDueTime's
        // business; the model does not check it, so that one defect fails one test.)
        ++stats["schedule_repeat"];
      } else {
        EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << id;
        ++stats["schedule_already_exists"];
      }
      return;
    }
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->created);
    if (id.empty()) {
      EXPECT_EQ(r->task_id.size(), 26u);
      EXPECT_EQ(model_.count(r->task_id), 0u) << r->task_id;
    } else {
      EXPECT_EQ(r->task_id, id);
    }
    ModelTask m;
    m.queue = sent.queue;
    m.payload = sent.payload;
    m.retry_policy = sent.retry_policy;
    m.due_time = std::max(sent.due_time, now);
    EXPECT_EQ(r->due_time, m.due_time);
    AddTask(r->task_id, std::move(m));
    ++stats["schedule_new"];
  }

  void DoCancel() {
    const std::string id = PickId();
    absl::StatusOr<TaskInfo> r = store_.Cancel(id);
    auto it = model_.find(id);
    if (it == model_.end()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << id;
      return;
    }
    ModelTask& m = it->second;
    if (m.state != TaskState::kScheduled && m.state != TaskState::kReady) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << id;
      return;
    }
    ASSERT_TRUE(r.ok()) << r.status();
    if (m.state == TaskState::kReady) RemoveFromReady(id, m.queue);
    ++stats[m.state == TaskState::kReady ? "cancel_ready" : "cancel_scheduled"];
    Finish(m, TaskState::kCancelled);
    EXPECT_EQ(r->state, TaskState::kCancelled);
    EXPECT_EQ(r->finish_time, m.finish_time);
  }

  void DoReschedule() {
    const absl::Time now = clock_.Now();
    const std::string id = PickId();
    const absl::Time due = now + absl::Milliseconds(Uniform(-1000, 8000));
    absl::StatusOr<TaskInfo> r = store_.Reschedule(id, due);
    auto it = model_.find(id);
    if (it == model_.end()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << id;
      return;
    }
    ModelTask& m = it->second;
    if (m.state != TaskState::kScheduled && m.state != TaskState::kReady) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << id;
      return;
    }
    ASSERT_TRUE(r.ok()) << r.status();
    if (m.state == TaskState::kReady) RemoveFromReady(id, m.queue);
    ++stats["reschedule"];
    m.state = TaskState::kScheduled;
    m.due_time = std::max(due, now);
    EXPECT_EQ(r->state, TaskState::kScheduled);
    EXPECT_EQ(r->due_time, m.due_time);
  }

  void DoLease() {
    const absl::Time now = clock_.Now();
    const std::string queue = absl::StrCat("q", Uniform(0, 2));
    const int max_tasks = static_cast<int>(Uniform(1, 4));
    const absl::Duration lease_duration = absl::Milliseconds(Uniform(1000, 5000));
    std::vector<LeasedTask> leased = store_.Lease(queue, max_tasks, lease_duration);
    std::deque<std::string>& ready = ready_[queue];
    ASSERT_EQ(leased.size(), std::min<size_t>(max_tasks, ready.size())) << queue;
    for (const LeasedTask& t : leased) {
      ASSERT_EQ(t.task_id, ready.front()) << "not the oldest READY task of " << queue;
      ready.pop_front();
      ModelTask& m = model_.at(t.task_id);
      ASSERT_NE(m.state, TaskState::kCancelled) << "a cancelled task was leased: " << t.task_id;
      ASSERT_EQ(m.state, TaskState::kReady) << t.task_id;
      EXPECT_LE(t.due_time, now) << "leased before its due time: " << t.task_id;
      EXPECT_EQ(t.due_time, m.due_time);
      EXPECT_EQ(t.queue, queue);
      EXPECT_EQ(t.payload, m.payload);
      EXPECT_EQ(t.attempt, m.attempts + 1);
      EXPECT_FALSE(t.lease_token.empty());
      EXPECT_EQ(t.lease_expire_time, now + lease_duration);
      m.state = TaskState::kLeased;
      m.attempts = t.attempt;
      m.lease_token = t.lease_token;
      m.lease_expire_time = now + lease_duration;
      ++stats["lease"];
    }
  }

  // A leased task's id with its token (mostly), or some other id/token pair.
  std::pair<std::string, std::string> PickLease() {
    std::vector<std::string> leased;
    for (const std::string& id : ids_) {
      if (model_.at(id).state == TaskState::kLeased) leased.push_back(id);
    }
    const int64_t r = Uniform(0, 99);
    if (r < 75 && !leased.empty()) {
      const std::string& id = AnyOf(leased);
      return {id, model_.at(id).lease_token};
    }
    if (r < 90 && !old_tokens_.empty()) {
      return old_tokens_[static_cast<size_t>(
          Uniform(0, static_cast<int64_t>(old_tokens_.size()) - 1))];
    }
    return {PickId(), "bogus"};
  }

  // The status the model expects for Ack/Nack/ExtendLease of (id, token).
  absl::StatusCode ExpectedLeaseCode(const std::string& id, const std::string& token) {
    auto it = model_.find(id);
    if (it == model_.end()) return absl::StatusCode::kNotFound;
    if (it->second.state != TaskState::kLeased || it->second.lease_token != token) {
      return absl::StatusCode::kFailedPrecondition;
    }
    return absl::StatusCode::kOk;
  }

  void DoAckOrNack(bool ack) {
    const absl::Time now = clock_.Now();
    const auto [id, token] = PickLease();
    const absl::StatusCode expected = ExpectedLeaseCode(id, token);
    if (ack) {
      absl::StatusOr<TaskInfo> acked = store_.Ack(id, token);
      ASSERT_EQ(acked.status().code(), expected) << id << " " << acked.status();
      if (!acked.ok()) return;
      ModelTask& m = model_.at(id);
      old_tokens_.emplace_back(id, m.lease_token);
      Finish(m, TaskState::kSucceeded);
      EXPECT_EQ(acked->state, TaskState::kSucceeded);
      EXPECT_EQ(acked->finish_time, m.finish_time);
      ++stats["ack"];
      return;
    }
    std::optional<absl::Duration> retry_delay;
    if (Uniform(0, 1) == 0) retry_delay = absl::Milliseconds(Uniform(0, 3000));
    const std::string error = absl::StrCat("error at op ", op_);
    absl::StatusOr<TaskInfo> r = store_.Nack(id, token, retry_delay, error);
    ASSERT_EQ(r.status().code(), expected) << id << " " << r.status();
    if (!r.ok()) return;
    ModelTask& m = model_.at(id);
    old_tokens_.emplace_back(id, m.lease_token);
    if (m.attempts >= m.retry_policy.max_attempts) {
      Finish(m, TaskState::kDead);
      ++stats["nack_dead"];
    } else {
      m.state = TaskState::kScheduled;
      m.lease_token.clear();
      m.due_time = now + retry_delay.value_or(ModelBackoff(m.retry_policy, m.attempts));
      ++stats[retry_delay.has_value() ? "nack_retry_delay" : "nack_backoff"];
    }
    EXPECT_EQ(r->state, m.state);
    EXPECT_EQ(r->attempts, m.attempts);
    EXPECT_EQ(r->last_error, error);
    if (m.state == TaskState::kScheduled) {
      EXPECT_EQ(r->due_time, m.due_time);
    }
  }

  void DoExtendLease() {
    const absl::Time now = clock_.Now();
    const auto [id, token] = PickLease();
    const absl::StatusCode expected = ExpectedLeaseCode(id, token);
    const absl::Duration lease_duration = absl::Milliseconds(Uniform(500, 5000));
    absl::StatusOr<absl::Time> r = store_.ExtendLease(id, token, lease_duration);
    ASSERT_EQ(r.status().code(), expected) << id << " " << r.status();
    if (!r.ok()) return;
    model_.at(id).lease_expire_time = now + lease_duration;
    EXPECT_EQ(*r, now + lease_duration);
    ++stats["extend_lease"];
  }

  void DoTick() {
    const absl::Duration d =
        Uniform(0, 9) == 0 ? absl::ZeroDuration() : absl::Milliseconds(Uniform(1, 3000));
    clock_.Advance(d);
    const absl::Time now = clock_.Now();
    for (;;) {
      std::vector<uint64_t> cookies = timers_.FireDue(now);
      if (cookies.empty()) break;
      for (uint64_t cookie : cookies) {
        ApplyOutcome(store_.OnTimer(cookie), now);
        if (::testing::Test::HasFailure()) return;
      }
    }
    // Nothing whose time has come was missed.
    for (const std::string& id : ids_) {
      const ModelTask& m = model_.at(id);
      std::optional<absl::Time> event = EventTime(m);
      if (event.has_value()) {
        EXPECT_GT(*event, now) << id << " " << TaskStateName(m.state);
      }
    }
  }

  // When the model expects the task's timer to fire; nullopt for READY.
  std::optional<absl::Time> EventTime(const ModelTask& m) const {
    switch (m.state) {
      case TaskState::kScheduled:
        return m.due_time;
      case TaskState::kReady:
        return std::nullopt;
      case TaskState::kLeased:
        return m.lease_expire_time;
      case TaskState::kSucceeded:
      case TaskState::kCancelled:
      case TaskState::kDead:
        return m.finish_time + retention_;
    }
    return std::nullopt;
  }

  void ApplyOutcome(const TimerOutcome& outcome, absl::Time now) {
    ASSERT_NE(outcome.kind, Kind::kStale) << "the fake never delivers an outdated cookie";
    auto it = model_.find(outcome.task_id);
    ASSERT_NE(it, model_.end()) << outcome.task_id;
    ModelTask& m = it->second;
    EXPECT_EQ(outcome.queue, m.queue);
    const std::optional<absl::Time> event = EventTime(m);
    ASSERT_TRUE(event.has_value()) << outcome.task_id << " fired while READY";
    ASSERT_LE(*event, now) << outcome.task_id << " fired early";
    switch (outcome.kind) {
      case Kind::kStale:
        break;
      case Kind::kReady:
        ASSERT_EQ(m.state, TaskState::kScheduled) << outcome.task_id;
        EXPECT_EQ(outcome.lateness, now - m.due_time);
        m.state = TaskState::kReady;
        ready_[m.queue].push_back(outcome.task_id);
        ++stats["ready"];
        break;
      case Kind::kLeaseRetry:
        ASSERT_EQ(m.state, TaskState::kLeased) << outcome.task_id;
        ASSERT_LT(m.attempts, m.retry_policy.max_attempts);
        old_tokens_.emplace_back(outcome.task_id, m.lease_token);
        m.state = TaskState::kScheduled;
        m.lease_token.clear();
        m.due_time = now + ModelBackoff(m.retry_policy, m.attempts);
        ++stats["lease_retry"];
        break;
      case Kind::kLeaseDead:
        ASSERT_EQ(m.state, TaskState::kLeased) << outcome.task_id;
        ASSERT_GE(m.attempts, m.retry_policy.max_attempts);
        old_tokens_.emplace_back(outcome.task_id, m.lease_token);
        Finish(m, TaskState::kDead);
        ++stats["lease_dead"];
        break;
      case Kind::kForgotten:
        ASSERT_TRUE(IsFinal(m.state)) << outcome.task_id;
        ForgetTask(outcome.task_id);
        ++stats["forgotten"];
        break;
    }
  }

  // Every task's Get() agrees with the model, as do Counts(), size() and the armed timers.
  void CheckEverything() {
    std::map<std::string, std::array<int64_t, kTaskStateCount>> expected_counts;
    size_t expected_timers = 0;
    for (const std::string& id : ids_) {
      const ModelTask& m = model_.at(id);
      ++expected_counts[m.queue][static_cast<int>(m.state)];
      if (m.state != TaskState::kReady) ++expected_timers;
      absl::StatusOr<TaskInfo> info = store_.Get(id);
      ASSERT_TRUE(info.ok()) << id << " " << info.status();
      EXPECT_EQ(info->state, m.state) << id;
      EXPECT_EQ(info->queue, m.queue) << id;
      EXPECT_EQ(info->attempts, m.attempts) << id;
      EXPECT_EQ(info->due_time, m.due_time) << id;
      EXPECT_EQ(info->lease_expire_time,
                m.state == TaskState::kLeased ? std::optional(m.lease_expire_time) : std::nullopt)
          << id;
      EXPECT_EQ(info->finish_time, IsFinal(m.state) ? std::optional(m.finish_time) : std::nullopt)
          << id;
      EXPECT_EQ(info->payload_size_bytes, static_cast<int64_t>(m.payload.size())) << id;
    }
    for (const std::string& id : forgotten_) {
      if (model_.count(id) == 0) {
        EXPECT_EQ(store_.Get(id).status().code(), absl::StatusCode::kNotFound) << id;
      }
    }
    for (const QueueCounts& c : store_.Counts()) {
      EXPECT_EQ(c.by_state, expected_counts[c.queue]) << c.queue;
    }
    EXPECT_EQ(store_.size(), model_.size());
    EXPECT_EQ(timers_.size(), expected_timers);
  }

  FakeClock& clock_;
  FakeTimers& timers_;
  TaskStore& store_;
  const absl::Duration retention_;
  std::mt19937_64 rng_;
  int op_ = 0;

  absl::flat_hash_map<std::string, ModelTask> model_;
  std::vector<std::string> ids_;  // model_'s keys, in an order that depends only on the seed
  std::map<std::string, std::deque<std::string>> ready_;  // per queue, oldest READY first
  std::vector<std::string> forgotten_;
  std::vector<std::pair<std::string, std::string>> old_tokens_;  // (task_id, lease_token)
};

// ~20k random operations over three queues with random time advances agree with a reference model
// of every task's state, attempts, due time and lease; no task is leased before its due time or
// after being cancelled, and Counts() and size() match throughout.
TEST_F(TaskStoreTest, RandomizedOperationsAgreeWithReferenceModel) {
  FakeTimers timers;
  const absl::Duration retention = absl::Seconds(20);
  TaskStore store(clock_, timers, {.retention = retention});
  ReferenceModelRun run(clock_, timers, store, retention, /*seed=*/20240101);
  run.Run(20000);
  for (const char* transition :
       {"schedule_new", "schedule_repeat", "schedule_already_exists", "cancel_scheduled",
        "cancel_ready", "reschedule", "lease", "ack", "nack_dead", "nack_retry_delay",
        "nack_backoff", "extend_lease", "ready", "lease_retry", "lease_dead", "forgotten"}) {
    EXPECT_GT(run.stats[transition], 10) << transition << " was not exercised enough";
    RecordProperty(transition, static_cast<int>(run.stats[transition]));
  }
}

// ---------------------------------------------------------------------------------------------
// Push tasks, RetryTask and ListTasks.

PushTarget HttpTargetFor(std::string url, absl::Duration deadline = absl::Seconds(5)) {
  PushTarget target;
  target.kind = PushTarget::Kind::kHttp;
  target.url = std::move(url);
  target.http_headers = {{"Content-Type", "application/json"}};
  target.dispatch_deadline = deadline;
  return target;
}

class PushTaskStoreTest : public TaskStoreTest {
 protected:
  // Schedules a push task due now and fires its timer: it is READY in the queue's push list.
  void SchedulePushReady(const std::string& queue, const std::string& task_id,
                         RetryPolicy retry_policy = {}) {
    NewTask task =
        Task(queue, task_id, "{\"id\":\"" + task_id + "\"}", absl::ZeroDuration(), retry_policy);
    task.target = HttpTargetFor("https://example.com/hook/" + task_id);
    MustSchedule(std::move(task));
    std::vector<TimerOutcome> fired = FireNow();
    ASSERT_EQ(fired.size(), 1u);
    EXPECT_EQ(fired[0].kind, Kind::kReady);
    EXPECT_TRUE(fired[0].push);
  }

  PushTask MustClaim(absl::string_view queue) {
    std::optional<PushTask> claimed = store_.ClaimPush(queue);
    EXPECT_TRUE(claimed.has_value());
    return claimed.value_or(PushTask{});
  }
};

// A push task is never handed to Lease, and a pull task never to ClaimPush, even in one queue;
// ClaimPush hands push tasks out oldest first with everything a delivery needs.
TEST_F(PushTaskStoreTest, PushAndPullTasksOfOneQueueAreHandedOutSeparately) {
  ScheduleReady("q", "pull-1");
  SchedulePushReady("q", "push-1");
  SchedulePushReady("q", "push-2");
  EXPECT_EQ(CountOf("q", TaskState::kReady), 3);

  std::vector<LeasedTask> leased = store_.Lease("q", 10, absl::Seconds(30));
  EXPECT_EQ(IdsOf(leased), std::vector<std::string>{"pull-1"});

  const absl::Time claim_time = clock_.Now();
  PushTask first = MustClaim("q");
  EXPECT_EQ(first.task_id, "push-1");
  EXPECT_EQ(first.queue, "q");
  EXPECT_EQ(first.payload, "{\"id\":\"push-1\"}");
  EXPECT_EQ(first.attempt, 1);
  EXPECT_EQ(first.target, HttpTargetFor("https://example.com/hook/push-1"));
  EXPECT_FALSE(first.lease_token.empty());
  absl::StatusOr<TaskInfo> info = store_.Get("push-1");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, TaskState::kLeased);
  EXPECT_EQ(info->lease_expire_time, claim_time + absl::Seconds(5) + TaskStore::kPushLeaseSlack);
  EXPECT_EQ(info->target, HttpTargetFor("https://example.com/hook/push-1"));
  EXPECT_EQ(MustClaim("q").task_id, "push-2");
  EXPECT_EQ(store_.ClaimPush("q"), std::nullopt);
  EXPECT_EQ(store_.ClaimPush("unknown-queue"), std::nullopt);
  EXPECT_TRUE(store_.Lease("q", 10, absl::Seconds(30)).empty());
}

// FinishPush: success is SUCCEEDED; a retry waits max(backoff, Retry-After) and keeps the error;
// a retry on the last attempt and a permanent failure are DEAD; a stale claim is refused.
TEST_F(PushTaskStoreTest, FinishPushAppliesEveryOutcome) {
  const RetryPolicy policy{
      .max_attempts = 3, .min_backoff = absl::Seconds(2), .max_backoff = absl::Seconds(60)};
  SchedulePushReady("q", "ok", policy);
  PushTask ok = MustClaim("q");
  absl::StatusOr<TaskInfo> done =
      store_.FinishPush("ok", ok.lease_token, {.kind = PushOutcome::Kind::kSucceeded});
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state, TaskState::kSucceeded);
  EXPECT_EQ(done->attempts, 1);
  EXPECT_EQ(store_.FinishPush("ok", ok.lease_token, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);

  SchedulePushReady("q", "flaky", policy);
  PushTask attempt1 = MustClaim("q");
  absl::StatusOr<TaskInfo> retried = store_.FinishPush(
      "flaky", attempt1.lease_token,
      {.kind = PushOutcome::Kind::kRetry, .error = "HTTP 503 Service Unavailable"});
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(retried->state, TaskState::kScheduled);
  EXPECT_EQ(retried->due_time, clock_.Now() + absl::Seconds(2));  // the backoff
  EXPECT_EQ(retried->last_error, "HTTP 503 Service Unavailable");
  EXPECT_TRUE(Tick(absl::Seconds(2) - kMs).empty());
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_TRUE(fired[0].push);
  PushTask attempt2 = MustClaim("q");
  EXPECT_EQ(attempt2.attempt, 2);
  // Retry-After longer than the backoff (4 s) wins.
  retried = store_.FinishPush(
      "flaky", attempt2.lease_token,
      {.kind = PushOutcome::Kind::kRetry, .error = "HTTP 429", .retry_after = absl::Seconds(90)});
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(retried->due_time, clock_.Now() + absl::Seconds(90));
  Tick(absl::Seconds(90));
  PushTask attempt3 = MustClaim("q");
  EXPECT_EQ(attempt3.attempt, 3);
  absl::StatusOr<TaskInfo> dead = store_.FinishPush(
      "flaky", attempt3.lease_token, {.kind = PushOutcome::Kind::kRetry, .error = "HTTP 500"});
  ASSERT_TRUE(dead.ok());
  EXPECT_EQ(dead->state, TaskState::kDead);
  EXPECT_EQ(dead->last_error, "HTTP 500");

  SchedulePushReady("q", "gone", policy);
  PushTask gone = MustClaim("q");
  dead = store_.FinishPush("gone", gone.lease_token,
                           {.kind = PushOutcome::Kind::kDead, .error = "HTTP 404 Not Found"});
  ASSERT_TRUE(dead.ok());
  EXPECT_EQ(dead->state, TaskState::kDead);
  EXPECT_EQ(dead->attempts, 1);
  EXPECT_EQ(dead->last_error, "HTTP 404 Not Found");
  EXPECT_EQ(CountOf("q", TaskState::kDead), 2);
  EXPECT_EQ(store_.FinishPush("nope", "token", {}).status().code(), absl::StatusCode::kNotFound);
}

// A delivery released at shutdown is due again at once and its attempt is not counted.
TEST_F(PushTaskStoreTest, ReleasedClaimIsDueNowWithoutCountingTheAttempt) {
  SchedulePushReady("q", "r");
  PushTask claim = MustClaim("q");
  absl::StatusOr<TaskInfo> released =
      store_.FinishPush("r", claim.lease_token, {.kind = PushOutcome::Kind::kReleased});
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(released->state, TaskState::kScheduled);
  EXPECT_EQ(released->attempts, 0);
  EXPECT_EQ(released->due_time, clock_.Now());
  EXPECT_EQ(released->last_error, "");
  std::vector<TimerOutcome> fired = FireNow();
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(MustClaim("q").attempt, 1);
}

// A claim whose delivery never reports (the server died) expires after the dispatch deadline
// plus the slack and is retried like an expired lease, with an error that says so.
TEST_F(PushTaskStoreTest, UnreportedClaimExpiresAndIsRetried) {
  SchedulePushReady("q", "lost");
  MustClaim("q");
  EXPECT_TRUE(Tick(absl::Seconds(5) + TaskStore::kPushLeaseSlack - kMs).empty());
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseRetry);
  absl::StatusOr<TaskInfo> info = store_.Get("lost");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, TaskState::kScheduled);
  EXPECT_TRUE(absl::StrContains(info->last_error, "did not finish by its dispatch deadline"))
      << info->last_error;
}

// Idempotent Schedule compares the push target too: the same request is a repeat, another
// target (or a pull task with the same id and payload) is ALREADY_EXISTS.
TEST_F(PushTaskStoreTest, IdempotencyIncludesTheTarget) {
  NewTask task = Task("q", "hook", "body", absl::Seconds(10));
  task.target = HttpTargetFor("https://example.com/a");
  ASSERT_TRUE(MustSchedule(task).created);
  absl::StatusOr<ScheduleResult> repeat = store_.Schedule(task);
  ASSERT_TRUE(repeat.ok());
  EXPECT_FALSE(repeat->created);
  NewTask other = task;
  other.target->url = "https://example.com/b";
  EXPECT_EQ(store_.Schedule(other).status().code(), absl::StatusCode::kAlreadyExists);
  other = task;
  other.target->dispatch_deadline = absl::Seconds(6);
  EXPECT_EQ(store_.Schedule(other).status().code(), absl::StatusCode::kAlreadyExists);
  other = task;
  other.target.reset();
  EXPECT_EQ(store_.Schedule(other).status().code(), absl::StatusCode::kAlreadyExists);
}

// Retry sends a DEAD task (pull or push) back with its payload and a fresh set of attempts; any
// other state is FAILED_PRECONDITION.
TEST_F(PushTaskStoreTest, RetryRevivesDeadTasksWithTheirPayload) {
  ScheduleReady("q", "pull", RetryPolicy{.max_attempts = 1});
  LeasedTask leased = LeaseOne("q", absl::Seconds(30));
  ASSERT_TRUE(store_.Nack("pull", leased.lease_token, std::nullopt, "boom").ok());
  EXPECT_EQ(StateOf("pull"), TaskState::kDead);
  SchedulePushReady("q", "push", RetryPolicy{.max_attempts = 1});
  PushTask claim = MustClaim("q");
  ASSERT_TRUE(store_
                  .FinishPush("push", claim.lease_token,
                              {.kind = PushOutcome::Kind::kDead, .error = "HTTP 410"})
                  .ok());

  clock_.Advance(absl::Minutes(5));
  absl::StatusOr<TaskInfo> retried = store_.Retry("pull");
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->state, TaskState::kScheduled);
  EXPECT_EQ(retried->attempts, 0);
  EXPECT_EQ(retried->due_time, clock_.Now());
  EXPECT_EQ(retried->finish_time, std::nullopt);
  EXPECT_EQ(retried->last_error, "boom");
  ASSERT_TRUE(store_.Retry("push").ok());
  std::vector<TimerOutcome> fired = FireNow();
  ASSERT_EQ(fired.size(), 2u);
  LeasedTask again = LeaseOne("q", absl::Seconds(30));
  EXPECT_EQ(again.payload, "payload of pull");
  EXPECT_EQ(again.attempt, 1);
  PushTask push_again = MustClaim("q");
  EXPECT_EQ(push_again.payload, "{\"id\":\"push\"}");
  EXPECT_EQ(push_again.attempt, 1);

  EXPECT_EQ(store_.Retry("pull").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Retry("missing").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_.Ack("pull", again.lease_token).ok());
  EXPECT_EQ(store_.Retry("pull").status().code(), absl::StatusCode::kFailedPrecondition);
}

// List filters by queue and state and pages through every match exactly once, also when tasks
// come and go between pages.
TEST_F(PushTaskStoreTest, ListPagesThroughEveryMatchOnce) {
  for (int i = 0; i < 10000; ++i) {
    MustSchedule(
        Task(i % 2 == 0 ? "even" : "odd", absl::StrCat("t", i), "p", absl::Seconds(10 + i % 3)));
  }
  for (int i = 0; i < 10000; i += 10) ASSERT_TRUE(store_.Cancel(absl::StrCat("t", i)).ok());

  auto list_all = [&](absl::string_view queue, std::optional<TaskState> state, size_t page_size,
                      bool churn) {
    std::vector<std::string> ids;
    uint64_t cursor = 0;
    int pages = 0;
    int added = 0;
    do {
      TaskPage page = store_.List(queue, state, page_size, cursor);
      EXPECT_LE(page.tasks.size(), page_size);
      for (const TaskInfo& info : page.tasks) {
        if (!queue.empty()) {
          EXPECT_EQ(info.queue, queue);
        }
        if (state.has_value()) {
          EXPECT_EQ(info.state, *state);
        }
        ids.push_back(info.task_id);
      }
      cursor = page.next_cursor;
      ++pages;
      if (churn) {  // new tasks between pages must not make existing ones appear twice
        MustSchedule(Task("even", absl::StrCat("new", added++), "p", absl::Seconds(10)));
      }
    } while (cursor != 0);
    EXPECT_GT(pages, 1);
    return ids;
  };
  std::vector<std::string> cancelled_even = list_all("even", TaskState::kCancelled, 7, false);
  EXPECT_EQ(cancelled_even.size(), 1000u);
  std::set<std::string> unique(cancelled_even.begin(), cancelled_even.end());
  EXPECT_EQ(unique.size(), 1000u);
  EXPECT_TRUE(unique.count("t0") && unique.count("t9990"));

  std::vector<std::string> odd = list_all("odd", std::nullopt, 333, true);
  EXPECT_EQ(odd.size(), 5000u);
  EXPECT_EQ(std::set<std::string>(odd.begin(), odd.end()).size(), 5000u);

  std::vector<std::string> all = list_all("", std::nullopt, 1000, false);
  EXPECT_EQ(all.size(), store_.size());
  EXPECT_TRUE(store_.List("none", std::nullopt, 10, 0).tasks.empty());
  EXPECT_EQ(store_.List("none", std::nullopt, 10, 0).next_cursor, 0u);
}

// A receiver's Retry-After far beyond the wheel's horizon is honoured only up to kMaxRetryAfter
// (it used to arm a timer past the horizon, which ends the process).
TEST_F(PushTaskStoreTest, HugeRetryAfterIsCappedAtADay) {
  SchedulePushReady("q", "later");
  PushTask claim = MustClaim("q");
  absl::StatusOr<TaskInfo> retried = store_.FinishPush("later", claim.lease_token,
                                                       {.kind = PushOutcome::Kind::kRetry,
                                                        .error = "HTTP 503",
                                                        .retry_after = absl::Hours(24 * 365 * 5)});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->state, TaskState::kScheduled);
  EXPECT_EQ(retried->due_time, clock_.Now() + TaskStore::kMaxRetryAfter);
}

// --- Options::max_pending (--max_pending): the bound on unfinished tasks ----------------------

// A TaskStore that holds at most kLimit unfinished tasks, and a log that keeps its records (to
// replay them into another store).
class MaxPendingTest : public ::testing::Test {
 protected:
  static constexpr int64_t kLimit = 3;

  class KeepingLog final : public TaskLog {
   public:
    uint64_t Append(const store::v1::LogRecord& record) override {
      records.push_back(record);
      return records.size();
    }
    std::vector<store::v1::LogRecord> records;
  };

  NewTask Task(std::string task_id, std::string payload = "payload",
               absl::Duration delay = absl::ZeroDuration(), RetryPolicy retry_policy = {}) {
    NewTask task;
    task.queue = "q";
    task.task_id = std::move(task_id);
    task.payload = std::move(payload);
    task.due_time = clock_.Now() + delay;
    task.retry_policy = retry_policy;
    return task;
  }

  // Schedules `task_id` (due now) and expects it accepted as a new task.
  void MustSchedule(const std::string& task_id, RetryPolicy retry_policy = {}) {
    absl::StatusOr<ScheduleResult> result =
        store_.Schedule(Task(task_id, "payload", absl::ZeroDuration(), retry_policy));
    ASSERT_TRUE(result.ok()) << task_id << ": " << result.status();
    EXPECT_TRUE(result->created) << task_id;
  }

  // Expects Schedule of a new `task_id` to be refused because the store is full.
  void ExpectFull(const std::string& task_id) {
    absl::StatusOr<ScheduleResult> result = store_.Schedule(Task(task_id));
    ASSERT_FALSE(result.ok()) << task_id << " was accepted beyond max_pending";
    EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
    EXPECT_EQ(store_.Get(task_id).status().code(), absl::StatusCode::kNotFound) << task_id;
  }

  // Delivers every timer due now, as the tick thread does.
  void FireNow() {
    for (;;) {
      std::vector<uint64_t> cookies = timers_.FireDue(clock_.Now());
      if (cookies.empty()) return;
      for (uint64_t cookie : cookies) store_.OnTimer(cookie);
    }
  }

  FakeClock clock_{kStart};
  FakeTimers timers_;
  KeepingLog log_;
  TaskStore store_{clock_, timers_, {.retention = kRetention, .max_pending = kLimit}, &log_};
};

// Exactly max_pending tasks are accepted; the next new one is RESOURCE_EXHAUSTED with a message
// that says what is full, the limit and what to do, and leaves no trace.
TEST_F(MaxPendingTest, AcceptsExactlyTheLimit) {
  EXPECT_EQ(store_.max_pending(), kLimit);
  for (int i = 1; i <= kLimit; ++i) {
    EXPECT_EQ(store_.pending(), i - 1);
    MustSchedule(absl::StrCat("t", i));
  }
  EXPECT_EQ(store_.pending(), kLimit);
  const size_t records = log_.records.size();

  absl::StatusOr<ScheduleResult> refused = store_.Schedule(Task("t4"));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_EQ(refused.status().message(),
            "the server is full: it holds 3 unfinished (scheduled, ready or leased) tasks, its "
            "limit (--max_pending=3); retry later, once consumers have finished tasks, or ask "
            "the operator to add consumers or raise --max_pending");
  // A server-made id is refused the same way.
  EXPECT_EQ(store_.Schedule(Task("")).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_.Get("t4").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.pending(), kLimit);
  EXPECT_EQ(store_.size(), static_cast<size_t>(kLimit));
  EXPECT_EQ(log_.records.size(), records) << "a refused Schedule must not be logged";
}

// READY and LEASED tasks count as pending; every way of finishing a task (Ack, Cancel, Nack on
// the last attempt, a lease running out on the last attempt) frees exactly one place, while a
// retry (Nack with attempts left) does not. Forgetting a finished task changes nothing.
TEST_F(MaxPendingTest, FinishedTasksFreeRoom) {
  const RetryPolicy once{
      .max_attempts = 1, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(1)};
  const RetryPolicy twice{
      .max_attempts = 2, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(1)};
  MustSchedule("acked");
  MustSchedule("retried", twice);
  MustSchedule("cancelled");
  FireNow();  // all READY
  ExpectFull("new-1");

  // LEASED still counts; SUCCEEDED does not.
  std::vector<LeasedTask> leased = store_.Lease("q", 2, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 2u);
  ASSERT_EQ(leased[0].task_id, "acked");
  ASSERT_EQ(leased[1].task_id, "retried");
  ExpectFull("new-1");
  ASSERT_TRUE(store_.Ack("acked", leased[0].lease_token).ok());
  EXPECT_EQ(store_.pending(), 2);
  MustSchedule("new-1", once);
  ExpectFull("new-2");

  // A Nack with attempts left goes back to SCHEDULED: still pending.
  ASSERT_TRUE(store_.Nack("retried", leased[1].lease_token, absl::Seconds(1), "again").ok());
  ExpectFull("new-2");

  // CANCELLED frees a place.
  ASSERT_TRUE(store_.Cancel("cancelled").ok());
  EXPECT_EQ(store_.pending(), 2);
  MustSchedule("new-2", once);
  ExpectFull("new-3");

  // A lease that runs out on the last attempt makes the task DEAD: a place is free.
  FireNow();
  std::vector<LeasedTask> last = store_.Lease("q", 1, absl::Seconds(5));
  ASSERT_EQ(last.size(), 1u);
  ASSERT_EQ(last[0].task_id, "new-1");
  clock_.Advance(absl::Seconds(5));
  FireNow();
  ASSERT_EQ(store_.Get("new-1")->state, TaskState::kDead);
  EXPECT_EQ(store_.pending(), 2);
  MustSchedule("new-3");
  ExpectFull("new-4");

  // A Nack on the last attempt: DEAD, a place is free.
  std::vector<LeasedTask> final_attempt = store_.Lease("q", 3, absl::Seconds(30));
  auto it = std::find_if(final_attempt.begin(), final_attempt.end(),
                         [](const LeasedTask& t) { return t.task_id == "retried"; });
  ASSERT_NE(it, final_attempt.end());
  ASSERT_EQ(it->attempt, 2);
  ASSERT_EQ(store_.Nack("retried", it->lease_token, std::nullopt, "no")->state, TaskState::kDead);
  EXPECT_EQ(store_.pending(), 2);
  ASSERT_EQ(final_attempt.size(), 2u);
  ASSERT_EQ(final_attempt[0].task_id, "new-2");
  ASSERT_TRUE(store_.Ack("new-2", final_attempt[0].lease_token).ok());
  EXPECT_EQ(store_.pending(), 1);  // new-3

  // Retention ending for finished tasks does not change the count.
  clock_.Advance(kRetention + absl::Seconds(1));
  FireNow();
  EXPECT_EQ(store_.Get("acked").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Get("retried").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.pending(), 1);
  MustSchedule("new-4");
  MustSchedule("new-5");
  ExpectFull("new-6");
}

// An idempotent repeat of an accepted task is answered OK even while the store is full, also for
// a finished task still retained; a different payload under a used id stays ALREADY_EXISTS.
TEST_F(MaxPendingTest, RepeatsAreAnsweredWhenFull) {
  MustSchedule("a");
  MustSchedule("b");
  MustSchedule("c");
  absl::StatusOr<ScheduleResult> repeat = store_.Schedule(Task("b"));
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_FALSE(repeat->created);
  EXPECT_EQ(repeat->task_id, "b");
  EXPECT_EQ(store_.Schedule(Task("b", "other payload")).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_.pending(), kLimit);

  ASSERT_TRUE(store_.Cancel("a").ok());
  MustSchedule("d");
  // "a" is CANCELLED and retained: its repeat is answered, not refused and not re-created.
  absl::StatusOr<ScheduleResult> finished_repeat = store_.Schedule(Task("a"));
  ASSERT_TRUE(finished_repeat.ok()) << finished_repeat.status();
  EXPECT_FALSE(finished_repeat->created);
  EXPECT_EQ(store_.Get("a")->state, TaskState::kCancelled);
  EXPECT_EQ(store_.pending(), kLimit);
}

// Recovery replays every acknowledged task even beyond the limit (nothing acknowledged is
// dropped), and rebuilds the exact count: new tasks are refused until enough have finished.
// Retry of a DEAD task is an operator's decision and is not limited either.
TEST_F(MaxPendingTest, RecoveryAndRetryAreNotLimitedAndCountExactly) {
  FakeClock clock{kStart};
  FakeTimers timers;
  KeepingLog log;
  TaskStore unlimited(clock, timers, {.retention = kRetention}, &log);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(unlimited.Schedule(Task(absl::StrCat("u", i))).ok());
  }
  ASSERT_TRUE(unlimited.Cancel("u0").ok());
  EXPECT_EQ(unlimited.pending(), 4);
  EXPECT_EQ(unlimited.max_pending(), 0);

  for (const store::v1::LogRecord& record : log.records) ASSERT_TRUE(store_.Replay(record).ok());
  store_.FinishRecovery();
  EXPECT_EQ(store_.pending(), 4);
  EXPECT_EQ(store_.size(), 5u);
  ExpectFull("n1");
  ASSERT_TRUE(store_.Cancel("u1").ok());
  ExpectFull("n1");
  ASSERT_TRUE(store_.Cancel("u2").ok());
  MustSchedule("n1");
  ExpectFull("n2");

  // A DEAD task retried while full: accepted, and counted.
  const RetryPolicy once{
      .max_attempts = 1, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(1)};
  ASSERT_TRUE(store_.Cancel("n1").ok());
  MustSchedule("dies", once);
  FireNow();
  std::vector<LeasedTask> leased = store_.Lease("q", 3, absl::Seconds(30));
  auto it = std::find_if(leased.begin(), leased.end(),
                         [](const LeasedTask& t) { return t.task_id == "dies"; });
  ASSERT_NE(it, leased.end());
  ASSERT_EQ(store_.Nack("dies", it->lease_token, std::nullopt, "no")->state, TaskState::kDead);
  MustSchedule("n2");
  EXPECT_EQ(store_.pending(), kLimit);
  ASSERT_TRUE(store_.Retry("dies").ok());
  EXPECT_EQ(store_.pending(), kLimit + 1);
  ExpectFull("n3");
}

// 0 means no limit.
TEST(MaxPendingUnlimitedTest, ZeroIsUnlimited) {
  FakeClock clock{kStart};
  FakeTimers timers;
  TaskStore store(clock, timers, {.retention = kRetention, .max_pending = 0});
  for (int i = 0; i < 2000; ++i) {
    NewTask task;
    task.queue = "q";
    task.payload = "p";
    task.due_time = clock.Now() + absl::Hours(1);
    ASSERT_TRUE(store.Schedule(std::move(task)).ok()) << i;
  }
  EXPECT_EQ(store.pending(), 2000);
}

// Workers may apply the timers of one tick in any order: Lease still hands out the oldest due
// first, ties in the order they became READY (an e2e test saw the race on a loaded machine).
TEST_F(TaskStoreTest, LeaseHandsOutOldestDueFirstWhateverOrderTasksBecameReady) {
  for (int i = 0; i < 5; ++i) {
    MustSchedule(Task("q", absl::StrCat("t", i), "p", absl::Milliseconds(10 * (i + 1))));
  }
  MustSchedule(Task("q", "tie", "p", absl::Milliseconds(30)));
  clock_.Advance(absl::Milliseconds(100));
  std::vector<uint64_t> cookies = timers_.FireDue(clock_.Now());
  ASSERT_EQ(cookies.size(), 6u);
  std::reverse(cookies.begin(), cookies.end());
  for (uint64_t cookie : cookies) EXPECT_EQ(store_.OnTimer(cookie).kind, Kind::kReady);
  std::vector<LeasedTask> leased = store_.Lease("q", 10, absl::Seconds(30));
  std::vector<std::string> ids = IdsOf(leased);
  // "t2" and "tie" are both due at 30 ms: whichever became READY first comes first.
  ASSERT_EQ(ids.size(), 6u);
  EXPECT_EQ(std::vector<std::string>(ids.begin(), ids.begin() + 2),
            (std::vector<std::string>{"t0", "t1"}));
  EXPECT_EQ(std::set<std::string>(ids.begin() + 2, ids.begin() + 4),
            (std::set<std::string>{"t2", "tie"}));
  EXPECT_EQ(std::vector<std::string>(ids.begin() + 4, ids.end()),
            (std::vector<std::string>{"t3", "t4"}));
}

}  // namespace
}  // namespace hourglass

// Tests that a TaskStore's log records are complete and that replaying them is exact:
//
//  - every mutator emits exactly the records TaskStore documents, and answers their LSNs; a repeat
//    or a failed call emits nothing; a store without a log behaves as one with a log;
//  - a store rebuilt by Replay() + FinishRecovery() from the log, or from a fuzzy snapshot plus the
//    log after the snapshot's start, is indistinguishable from the live store (randomized runs with
//    fixed seeds, and the adversarial cases written out);
//  - FinishRecovery() arms every task's timer for its state;
//  - Replay() refuses records that make no sense.
//
// Records go through RecordingLog, which serializes and parses each one back, so what is replayed
// is what a log file would return. Time is simulated (FakeClock, FakeTimers): nothing sleeps.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/task_log.h"
#include "store/task_store.h"
#include "tests/store/fake_timers.h"
#include "tests/store/task_info_describe.h"
#include "tests/testing/fake_clock.h"
#include "wheel/clock.h"

namespace hourglass {

// gtest prints these by name in failure messages (found by ADL).
void PrintTo(TaskState state, std::ostream* os) { *os << TaskStateName(state); }
absl::string_view KindName(TimerOutcome::Kind kind) {
  switch (kind) {
    case TimerOutcome::Kind::kStale:
      return "kStale";
    case TimerOutcome::Kind::kReady:
      return "kReady";
    case TimerOutcome::Kind::kLeaseRetry:
      return "kLeaseRetry";
    case TimerOutcome::Kind::kLeaseDead:
      return "kLeaseDead";
    case TimerOutcome::Kind::kForgotten:
      return "kForgotten";
  }
  return "Kind(?)";
}
void PrintTo(TimerOutcome::Kind kind, std::ostream* os) { *os << KindName(kind); }

namespace {

using Kind = TimerOutcome::Kind;
using store::v1::LogRecord;
using store::v1::TaskPut;
using store::v1::TaskUpdate;

constexpr absl::Duration kRetention = absl::Seconds(10);
constexpr absl::Duration kMs = absl::Milliseconds(1);
// 2024-01-01T00:00:00Z.
const absl::Time kStart = absl::FromUnixSeconds(1704067200);
constexpr std::array<absl::string_view, 3> kQueues = {"alpha", "beta", "gamma"};

// RecordingLog: a TaskLog that keeps every record, numbering them 1, 2, 3... Each record is
// serialized and parsed back before it is kept (a record that does not survive the round trip
// fails the test), so the records the tests replay are what a log file would give back.
//
// Thread-safe: the store calls Append() with its own lock held; tests read between calls.
class RecordingLog final : public TaskLog {
 public:
  uint64_t Append(const LogRecord& record) override ABSL_LOCKS_EXCLUDED(mu_) {
    const std::string bytes = record.SerializeAsString();
    LogRecord parsed;
    const bool parsed_ok = parsed.ParseFromString(bytes);
    EXPECT_TRUE(parsed_ok && google::protobuf::util::MessageDifferencer::Equals(parsed, record))
        << "record does not survive serialization: " << record.ShortDebugString();
    absl::MutexLock lock(&mu_);
    records_.push_back(std::move(parsed));
    return records_.size();
  }

  // The LSN of the last record; 0 when there is none.
  uint64_t last_lsn() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return records_.size();
  }
  LogRecord At(uint64_t lsn) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return records_.at(lsn - 1);
  }
  // The records with an LSN greater than `lsn`, in LSN order.
  std::vector<LogRecord> After(uint64_t lsn) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return std::vector<LogRecord>(records_.begin() + static_cast<ptrdiff_t>(lsn), records_.end());
  }
  std::vector<LogRecord> All() const { return After(0); }

 private:
  mutable absl::Mutex mu_;
  std::vector<LogRecord> records_ ABSL_GUARDED_BY(mu_);  // LSN i at index i - 1
};

std::string StateView(absl::string_view task_id, TaskState state, int32_t attempts,
                      absl::Time due_time, std::optional<absl::Time> lease_expire_time,
                      std::optional<absl::Time> finish_time, absl::string_view last_error) {
  return absl::StrCat(task_id, " {state=", TaskStateName(state), " attempts=", attempts,
                      " due=", TimeString(due_time),
                      " lease_expire=", TimeString(lease_expire_time),
                      " finish=", TimeString(finish_time), " last_error=\"", last_error, "\"}");
}
// What a TaskUpdate says of its task, in TaskInfo's terms, to compare a record with Get().
std::string StateView(const TaskUpdate& update) {
  const auto state = static_cast<TaskState>(update.state());
  const absl::Time lease_expire = absl::FromUnixNanos(update.lease_expire_time_unix_nanos());
  const absl::Time finish = absl::FromUnixNanos(update.finish_time_unix_nanos());
  return StateView(update.task_id(), state, update.attempts(),
                   absl::FromUnixNanos(update.due_time_unix_nanos()),
                   state == TaskState::kLeased ? std::optional(lease_expire) : std::nullopt,
                   IsFinal(state) ? std::optional(finish) : std::nullopt, update.last_error());
}
std::string StateView(const TaskInfo& info) {
  return StateView(info.task_id, info.state, info.attempts, info.due_time, info.lease_expire_time,
                   info.finish_time, info.last_error);
}

Headers HeadersOf(const TaskPut& put) {
  Headers headers;
  for (const store::v1::Header& header : put.headers()) {
    headers.emplace_back(header.key(), header.value());
  }
  return headers;
}

// What `store` knows of `task_id`; a failure (and an empty TaskInfo) when it does not know it.
TaskInfo GetOrFail(const TaskStore& store, absl::string_view task_id) {
  absl::StatusOr<TaskInfo> info = store.Get(task_id);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? *info : TaskInfo{};
}

// Counts() by queue, without queues whose counts are all zero: a store keeps a queue it has seen
// even when its tasks are gone, and a recovered store has not seen the queues of tasks forgotten
// before the log (or snapshot) it was rebuilt from.
std::map<std::string, std::array<int64_t, kTaskStateCount>> NonZeroCounts(const TaskStore& store) {
  std::map<std::string, std::array<int64_t, kTaskStateCount>> counts;
  for (const QueueCounts& c : store.Counts()) {
    if (std::any_of(c.by_state.begin(), c.by_state.end(), [](int64_t n) { return n != 0; })) {
      counts[c.queue] = c.by_state;
    }
  }
  return counts;
}

// A store rebuilt from records as recovery rebuilds one: on the live store's clock (so "now" is
// the same), with timers of its own and a log of its own, which recovery itself must leave empty.
struct RecoveredStore {
  explicit RecoveredStore(Clock& clock) : store(clock, timers, {.retention = kRetention}, &log) {}

  // Delivers the timers due now, as the tick thread would, and returns what they did.
  std::vector<TimerOutcome> FireDue(absl::Time now) {
    std::vector<TimerOutcome> outcomes;
    for (;;) {
      std::vector<uint64_t> cookies = timers.FireDue(now);
      if (cookies.empty()) return outcomes;
      for (uint64_t cookie : cookies) outcomes.push_back(store.OnTimer(cookie));
    }
  }

  FakeTimers timers;  // declared before the store, which disarms its timers when destroyed
  RecordingLog log;
  TaskStore store;
};

// Replays `snapshot` and then `log_records` into a new store and ends recovery. Replay arms no
// timer; FinishRecovery arms one per task (no task is READY after it); neither logs anything.
std::unique_ptr<RecoveredStore> Recover(Clock& clock, const std::vector<LogRecord>& snapshot,
                                        const std::vector<LogRecord>& log_records) {
  auto recovered = std::make_unique<RecoveredStore>(clock);
  for (const std::vector<LogRecord>* part : {&snapshot, &log_records}) {
    for (const LogRecord& record : *part) {
      const absl::Status replayed = recovered->store.Replay(record);
      EXPECT_TRUE(replayed.ok()) << replayed << " replaying " << record.ShortDebugString();
    }
  }
  EXPECT_EQ(recovered->timers.size(), 0u) << "Replay armed a timer before FinishRecovery";
  recovered->store.FinishRecovery();
  EXPECT_EQ(recovered->timers.size(), recovered->store.size())
      << "FinishRecovery arms exactly one timer per task";
  EXPECT_EQ(recovered->log.last_lsn(), 0u) << "recovery logged a change";
  return recovered;
}

// The core property. `live` has delivered every timer due at `now`; `recovered` is fresh from
// Recover(). Checks, for every task of `live_ids`: before the recovered store's timers fire, its
// GetStatus equals the live one with READY read as SCHEDULED (READY is not logged); firing what is
// due at `now` makes exactly the live READY tasks READY and does nothing else; then every field of
// every task, Counts() and size() are equal, and `gone_ids` are unknown to both.
void ExpectRecoveredEqualsLive(TaskStore& live, RecoveredStore& recovered, absl::Time now,
                               const std::vector<std::string>& live_ids,
                               const std::vector<std::string>& gone_ids) {
  size_t live_ready = 0;
  for (const std::string& id : live_ids) {
    absl::StatusOr<TaskInfo> expected = live.Get(id);
    ASSERT_TRUE(expected.ok()) << expected.status();
    absl::StatusOr<TaskInfo> got = recovered.store.Get(id);
    ASSERT_TRUE(got.ok()) << "recovered store lost " << id << ": " << got.status();
    if (expected->state == TaskState::kReady) {
      EXPECT_LE(expected->due_time, now) << id;
      expected->state = TaskState::kScheduled;
      ++live_ready;
    }
    EXPECT_EQ(Describe(*got), Describe(*expected)) << "before the recovered timers fired";
  }
  EXPECT_EQ(recovered.store.size(), live.size());
  EXPECT_EQ(live.size(), live_ids.size());

  size_t fired_ready = 0;
  for (const TimerOutcome& outcome : recovered.FireDue(now)) {
    EXPECT_EQ(outcome.kind, Kind::kReady)
        << outcome.task_id << " fired on the recovered store only";
    if (outcome.kind == Kind::kReady) ++fired_ready;
  }
  EXPECT_EQ(fired_ready, live_ready);
  EXPECT_EQ(recovered.log.last_lsn(), 0u) << "the recovered store logged a change of its own";

  for (const std::string& id : live_ids) {
    absl::StatusOr<TaskInfo> expected = live.Get(id);
    absl::StatusOr<TaskInfo> got = recovered.store.Get(id);
    ASSERT_TRUE(expected.ok() && got.ok()) << id;
    EXPECT_EQ(Describe(*got), Describe(*expected));
  }
  EXPECT_EQ(NonZeroCounts(recovered.store), NonZeroCounts(live));
  for (const std::string& id : gone_ids) {
    EXPECT_EQ(live.Get(id).status().code(), absl::StatusCode::kNotFound) << id;
    EXPECT_EQ(recovered.store.Get(id).status().code(), absl::StatusCode::kNotFound) << id;
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Each mutator's records.

class TaskStoreLogTest : public ::testing::Test {
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

  std::vector<TimerOutcome> Tick(absl::Duration d) {
    clock_.Advance(d);
    return FireNow();
  }
  std::vector<TimerOutcome> FireNow() {
    std::vector<TimerOutcome> outcomes;
    for (;;) {
      std::vector<uint64_t> cookies = timers_.FireDue(clock_.Now());
      if (cookies.empty()) return outcomes;
      for (uint64_t cookie : cookies) outcomes.push_back(store_.OnTimer(cookie));
    }
  }

  TaskInfo MustGet(absl::string_view task_id) { return GetOrFail(store_, task_id); }

  // The record at `lsn` is an update of `task_id` saying exactly what Get() says now.
  void ExpectUpdateAt(uint64_t lsn, absl::string_view task_id) {
    ASSERT_GE(log_.last_lsn(), lsn);
    const LogRecord record = log_.At(lsn);
    ASSERT_TRUE(record.has_update()) << record.ShortDebugString();
    EXPECT_EQ(record.update().task_id(), task_id);
    EXPECT_EQ(StateView(record.update()), StateView(MustGet(task_id)));
  }

  FakeClock clock_{kStart};
  FakeTimers timers_;
  RecordingLog log_;
  TaskStore store_{clock_, timers_, {.retention = kRetention}, &log_};
};

// Schedule emits one put with every field of the task, at LSN 1, 2, ...; an idempotent repeat and
// an ALREADY_EXISTS emit nothing and leave *lsn at 0.
TEST_F(TaskStoreLogTest, ScheduleEmitsOnePutWithEveryField) {
  NewTask task =
      Task("emails", "welcome", "hello", absl::Seconds(10),
           {.max_attempts = 3, .min_backoff = absl::Seconds(2), .max_backoff = absl::Minutes(1)});
  task.headers = {{"trace", "abc"}, {"lang", "en"}};
  uint64_t lsn = 0;
  absl::StatusOr<ScheduleResult> scheduled = store_.Schedule(task, &lsn);
  ASSERT_TRUE(scheduled.ok()) << scheduled.status();
  EXPECT_EQ(lsn, 1u);
  ASSERT_EQ(log_.last_lsn(), 1u);
  const LogRecord first = log_.At(1);
  ASSERT_TRUE(first.has_put()) << first.ShortDebugString();
  const TaskPut& put = first.put();
  EXPECT_EQ(put.task_id(), "welcome");
  EXPECT_EQ(put.queue(), "emails");
  EXPECT_EQ(put.payload(), "hello");
  EXPECT_EQ(HeadersOf(put), (Headers{{"trace", "abc"}, {"lang", "en"}}));
  EXPECT_NE(put.payload_fingerprint(), 0u);
  EXPECT_EQ(put.payload_size_bytes(), 5);
  EXPECT_EQ(put.create_time_unix_nanos(), absl::ToUnixNanos(kStart));
  EXPECT_EQ(put.first_due_time_unix_nanos(), absl::ToUnixNanos(kStart + absl::Seconds(10)));
  EXPECT_EQ(put.max_attempts(), 3);
  EXPECT_EQ(put.min_backoff_nanos(), absl::ToInt64Nanoseconds(absl::Seconds(2)));
  EXPECT_EQ(put.max_backoff_nanos(), absl::ToInt64Nanoseconds(absl::Minutes(1)));
  EXPECT_EQ(put.state().task_id(), "welcome");
  EXPECT_EQ(put.state().state(), static_cast<int32_t>(TaskState::kScheduled));
  EXPECT_EQ(put.state().attempts(), 0);
  EXPECT_EQ(put.state().due_time_unix_nanos(), absl::ToUnixNanos(kStart + absl::Seconds(10)));
  EXPECT_EQ(put.state().lease_token(), "");
  EXPECT_EQ(put.state().last_error(), "");
  EXPECT_EQ(StateView(put.state()), StateView(MustGet("welcome")));

  // A generated id; a due time in the past is logged as now, as it is answered.
  clock_.Advance(absl::Seconds(1));
  lsn = 0;
  absl::StatusOr<ScheduleResult> generated =
      store_.Schedule(Task("emails", "", "hello", -absl::Hours(1)), &lsn);
  ASSERT_TRUE(generated.ok()) << generated.status();
  EXPECT_EQ(lsn, 2u);
  ASSERT_EQ(log_.last_lsn(), 2u);
  const LogRecord second = log_.At(2);
  ASSERT_TRUE(second.has_put());
  EXPECT_EQ(second.put().task_id(), generated->task_id);
  EXPECT_EQ(second.put().first_due_time_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
  EXPECT_EQ(second.put().state().due_time_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
  EXPECT_EQ(second.put().payload_fingerprint(), put.payload_fingerprint());  // same payload

  // An idempotent repeat: nothing logged, and answered with the original's put, so that it is
  // not acknowledged before the original is durable.
  lsn = 0;
  absl::StatusOr<ScheduleResult> repeat = store_.Schedule(task, &lsn);
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_FALSE(repeat->created);
  ASSERT_NE(lsn, 0u);
  EXPECT_EQ(log_.At(lsn).put().task_id(), task.task_id);
  EXPECT_EQ(log_.last_lsn(), 2u);

  // ALREADY_EXISTS: nothing logged.
  task.payload = "other";
  lsn = 0;
  EXPECT_EQ(store_.Schedule(task, &lsn).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(lsn, 0u);
  EXPECT_EQ(log_.last_lsn(), 2u);
  EXPECT_EQ(store_.size(), 2u);
}

// Cancel and Reschedule emit one update each (also of a READY task); SCHEDULED -> READY emits
// nothing; NOT_FOUND and FAILED_PRECONDITION emit nothing.
TEST_F(TaskStoreLogTest, CancelAndRescheduleEmitOneUpdateAndFailuresNothing) {
  MustSchedule(Task("q", "a", "pa", absl::Seconds(10)));
  MustSchedule(Task("q", "b", "pb", absl::Seconds(10)));
  ASSERT_EQ(log_.last_lsn(), 2u);

  uint64_t lsn = 0;
  ASSERT_TRUE(store_.Reschedule("a", clock_.Now() + absl::Seconds(5), &lsn).ok());
  EXPECT_EQ(lsn, 3u);
  EXPECT_EQ(log_.last_lsn(), 3u);
  ExpectUpdateAt(3, "a");
  EXPECT_EQ(log_.At(3).update().due_time_unix_nanos(),
            absl::ToUnixNanos(kStart + absl::Seconds(5)));

  clock_.Advance(absl::Seconds(1));
  lsn = 0;
  ASSERT_TRUE(store_.Cancel("b", &lsn).ok());
  EXPECT_EQ(lsn, 4u);
  EXPECT_EQ(log_.last_lsn(), 4u);
  ExpectUpdateAt(4, "b");
  EXPECT_EQ(log_.At(4).update().state(), static_cast<int32_t>(TaskState::kCancelled));
  EXPECT_EQ(log_.At(4).update().finish_time_unix_nanos(), absl::ToUnixNanos(clock_.Now()));

  lsn = 0;
  EXPECT_EQ(store_.Cancel("b", &lsn).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Reschedule("b", clock_.Now(), &lsn).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Cancel("nope", &lsn).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Reschedule("nope", clock_.Now(), &lsn).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(lsn, 0u);
  EXPECT_EQ(log_.last_lsn(), 4u);

  // SCHEDULED -> READY is not logged.
  std::vector<TimerOutcome> fired = Tick(absl::Seconds(4));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(MustGet("a").state, TaskState::kReady);
  EXPECT_EQ(log_.last_lsn(), 4u);

  // READY -> SCHEDULED by Reschedule, and READY -> CANCELLED.
  ASSERT_TRUE(store_.Reschedule("a", clock_.Now(), &lsn).ok());
  EXPECT_EQ(lsn, 5u);
  ExpectUpdateAt(5, "a");
  EXPECT_EQ(log_.At(5).update().state(), static_cast<int32_t>(TaskState::kScheduled));
  ASSERT_EQ(FireNow().size(), 1u);
  EXPECT_EQ(MustGet("a").state, TaskState::kReady);
  ASSERT_TRUE(store_.Cancel("a", &lsn).ok());
  EXPECT_EQ(lsn, 6u);
  ExpectUpdateAt(6, "a");
  EXPECT_EQ(log_.last_lsn(), 6u);
}

// Lease emits one update per task handed out, in hand-out order, each with its lease token, and
// answers the LSN of the last; a Lease that hands out nothing emits nothing.
TEST_F(TaskStoreLogTest, LeaseEmitsOneUpdatePerTaskAndAnswersTheLastLsn) {
  for (const char* id : {"t1", "t2", "t3"}) MustSchedule(Task("q", id, "p", absl::ZeroDuration()));
  MustSchedule(Task("r", "r1", "p", absl::ZeroDuration()));
  ASSERT_EQ(FireNow().size(), 4u);
  ASSERT_EQ(log_.last_lsn(), 4u);

  clock_.Advance(absl::Seconds(1));
  uint64_t lsn = 0;
  std::vector<LeasedTask> leased = store_.Lease("q", 10, absl::Seconds(30), &lsn);
  ASSERT_EQ(leased.size(), 3u);
  EXPECT_EQ(lsn, 7u);
  ASSERT_EQ(log_.last_lsn(), 7u);
  for (size_t i = 0; i < leased.size(); ++i) {
    const uint64_t at = 5 + i;
    ExpectUpdateAt(at, leased[i].task_id);
    const TaskUpdate update = log_.At(at).update();
    EXPECT_EQ(update.state(), static_cast<int32_t>(TaskState::kLeased));
    EXPECT_EQ(update.attempts(), 1);
    EXPECT_EQ(update.lease_token(), leased[i].lease_token);
    EXPECT_EQ(update.lease_expire_time_unix_nanos(),
              absl::ToUnixNanos(clock_.Now() + absl::Seconds(30)));
  }
  EXPECT_EQ(leased[0].task_id, "t1");
  EXPECT_EQ(leased[2].task_id, "t3");

  lsn = 0;
  EXPECT_TRUE(store_.Lease("q", 10, absl::Seconds(30), &lsn).empty());
  EXPECT_TRUE(store_.Lease("unknown", 10, absl::Seconds(30), &lsn).empty());
  EXPECT_TRUE(store_.Lease("r", 0, absl::Seconds(30), &lsn).empty());
  EXPECT_EQ(lsn, 0u);
  EXPECT_EQ(log_.last_lsn(), 7u);

  ASSERT_EQ(store_.Lease("r", 10, absl::Seconds(5), &lsn).size(), 1u);
  EXPECT_EQ(lsn, 8u);
  ExpectUpdateAt(8, "r1");
}

// Ack, Nack (retry and DEAD) and ExtendLease emit one update each; a wrong token, a task not
// leased and an unknown task emit nothing.
TEST_F(TaskStoreLogTest, AckNackExtendLeaseEmitOneUpdateAndFailuresNothing) {
  const RetryPolicy two_attempts{
      .max_attempts = 2, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(10)};
  for (const char* id : {"t1", "t2", "t3"}) {
    MustSchedule(Task("q", id, "p", absl::ZeroDuration(), two_attempts));
  }
  ASSERT_EQ(FireNow().size(), 3u);
  std::vector<LeasedTask> leased = store_.Lease("q", 3, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 3u);
  uint64_t next = log_.last_lsn() + 1;
  ASSERT_EQ(next, 7u);

  clock_.Advance(absl::Seconds(2));
  uint64_t lsn = 0;
  absl::StatusOr<absl::Time> extended =
      store_.ExtendLease("t1", leased[0].lease_token, absl::Minutes(1), &lsn);
  ASSERT_TRUE(extended.ok()) << extended.status();
  EXPECT_EQ(lsn, next);
  ExpectUpdateAt(next, "t1");
  EXPECT_EQ(log_.At(next).update().lease_expire_time_unix_nanos(),
            absl::ToUnixNanos(clock_.Now() + absl::Minutes(1)));
  EXPECT_EQ(log_.At(next).update().lease_token(), leased[0].lease_token);
  ++next;

  lsn = 0;
  EXPECT_EQ(store_.ExtendLease("t1", "wrong", absl::Minutes(1), &lsn).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.ExtendLease("nope", "wrong", absl::Minutes(1), &lsn).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Ack("t3", "wrong", &lsn).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Ack("nope", "wrong", &lsn).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Nack("t3", "wrong", std::nullopt, "e", &lsn).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Nack("nope", "wrong", std::nullopt, "e", &lsn).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(lsn, 0u);
  EXPECT_EQ(log_.last_lsn(), next - 1);

  ASSERT_TRUE(store_.Ack("t1", leased[0].lease_token, &lsn).ok());
  EXPECT_EQ(lsn, next);
  ExpectUpdateAt(next, "t1");
  EXPECT_EQ(log_.At(next).update().state(), static_cast<int32_t>(TaskState::kSucceeded));
  EXPECT_EQ(log_.At(next).update().finish_time_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
  ++next;
  lsn = 0;
  EXPECT_EQ(store_.Ack("t1", leased[0].lease_token, &lsn).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(lsn, 0u);
  EXPECT_EQ(log_.last_lsn(), next - 1);

  ASSERT_TRUE(store_.Nack("t2", leased[1].lease_token, absl::Seconds(5), "boom", &lsn).ok());
  EXPECT_EQ(lsn, next);
  ExpectUpdateAt(next, "t2");
  const TaskUpdate retry = log_.At(next).update();
  EXPECT_EQ(retry.state(), static_cast<int32_t>(TaskState::kScheduled));
  EXPECT_EQ(retry.attempts(), 1);
  EXPECT_EQ(retry.due_time_unix_nanos(), absl::ToUnixNanos(clock_.Now() + absl::Seconds(5)));
  EXPECT_EQ(retry.last_error(), "boom");
  EXPECT_EQ(retry.lease_token(), "");
  ++next;
  lsn = 0;
  EXPECT_EQ(store_.Nack("t2", leased[1].lease_token, std::nullopt, "again", &lsn).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(lsn, 0u);
  EXPECT_EQ(log_.last_lsn(), next - 1);

  // The retry becomes READY unlogged; its second hand-out and the last Nack make it DEAD.
  ASSERT_EQ(Tick(absl::Seconds(5)).size(), 1u);
  EXPECT_EQ(log_.last_lsn(), next - 1);
  std::vector<LeasedTask> again = store_.Lease("q", 1, absl::Seconds(30), &lsn);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(lsn, next);
  ++next;
  ASSERT_TRUE(store_.Nack("t2", again[0].lease_token, std::nullopt, "again", &lsn).ok());
  EXPECT_EQ(lsn, next);
  ExpectUpdateAt(next, "t2");
  EXPECT_EQ(log_.At(next).update().state(), static_cast<int32_t>(TaskState::kDead));
  EXPECT_EQ(log_.At(next).update().attempts(), 2);
  EXPECT_EQ(log_.At(next).update().last_error(), "again");
  EXPECT_EQ(log_.last_lsn(), next);
}

// A lease's expiry emits one update (retry, then DEAD on the last attempt); the end of retention
// emits one forget; READY emits nothing; nothing is emitted a millisecond early.
TEST_F(TaskStoreLogTest, LeaseExpiryEmitsOneUpdateAndRetentionEndOneForget) {
  const RetryPolicy two_attempts{
      .max_attempts = 2, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(1)};
  MustSchedule(Task("q", "x", "p", absl::ZeroDuration(), two_attempts));
  ASSERT_EQ(FireNow().size(), 1u);
  ASSERT_EQ(store_.Lease("q", 1, absl::Seconds(5)).size(), 1u);
  ASSERT_EQ(log_.last_lsn(), 2u);

  EXPECT_TRUE(Tick(absl::Seconds(5) - kMs).empty());
  EXPECT_EQ(log_.last_lsn(), 2u);
  std::vector<TimerOutcome> fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseRetry);
  ASSERT_EQ(log_.last_lsn(), 3u);
  ExpectUpdateAt(3, "x");
  const TaskUpdate retry = log_.At(3).update();
  EXPECT_EQ(retry.state(), static_cast<int32_t>(TaskState::kScheduled));
  EXPECT_EQ(retry.attempts(), 1);
  EXPECT_EQ(retry.due_time_unix_nanos(), absl::ToUnixNanos(clock_.Now() + absl::Seconds(1)));
  EXPECT_TRUE(absl::StartsWith(retry.last_error(), "lease expired at ")) << retry.last_error();
  EXPECT_EQ(retry.lease_token(), "");

  ASSERT_EQ(Tick(absl::Seconds(1)).size(), 1u);  // READY
  EXPECT_EQ(log_.last_lsn(), 3u);
  ASSERT_EQ(store_.Lease("q", 1, absl::Seconds(5)).size(), 1u);
  EXPECT_EQ(log_.last_lsn(), 4u);
  fired = Tick(absl::Seconds(5));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kLeaseDead);
  ASSERT_EQ(log_.last_lsn(), 5u);
  ExpectUpdateAt(5, "x");
  EXPECT_EQ(log_.At(5).update().state(), static_cast<int32_t>(TaskState::kDead));
  EXPECT_EQ(log_.At(5).update().finish_time_unix_nanos(), absl::ToUnixNanos(clock_.Now()));

  EXPECT_TRUE(Tick(kRetention - kMs).empty());
  EXPECT_EQ(log_.last_lsn(), 5u);
  fired = Tick(kMs);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kForgotten);
  ASSERT_EQ(log_.last_lsn(), 6u);
  const LogRecord forget = log_.At(6);
  ASSERT_TRUE(forget.has_forget()) << forget.ShortDebugString();
  EXPECT_EQ(forget.forget().task_id(), "x");
  EXPECT_EQ(store_.size(), 0u);
}

// A store without a log answers every call exactly as one with a log does (lease tokens aside,
// which are random), and every lsn it answers is 0.
TEST(TaskStoreWithoutLogTest, BehavesAsAStoreWithALog) {
  FakeClock clock(kStart);
  FakeTimers logged_timers;
  RecordingLog log;
  TaskStore logged(clock, logged_timers, {.retention = kRetention}, &log);
  FakeTimers plain_timers;
  TaskStore plain(clock, plain_timers, {.retention = kRetention});

  auto fire = [&clock](FakeTimers& timers, TaskStore& store) {
    std::vector<Kind> kinds;
    for (;;) {
      std::vector<uint64_t> cookies = timers.FireDue(clock.Now());
      if (cookies.empty()) return kinds;
      for (uint64_t cookie : cookies) kinds.push_back(store.OnTimer(cookie).kind);
    }
  };
  auto expect_same = [&](absl::string_view step) {
    SCOPED_TRACE(step);
    EXPECT_EQ(fire(plain_timers, plain), fire(logged_timers, logged));
    for (const char* id : {"a", "b", "c", "d"}) {
      absl::StatusOr<TaskInfo> p = plain.Get(id);
      absl::StatusOr<TaskInfo> l = logged.Get(id);
      ASSERT_EQ(p.status().code(), l.status().code()) << id;
      if (p.ok()) {
        EXPECT_EQ(Describe(*p), Describe(*l));
      }
    }
    EXPECT_EQ(NonZeroCounts(plain), NonZeroCounts(logged));
  };
  const RetryPolicy two_attempts{
      .max_attempts = 2, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(1)};
  for (const char* id : {"a", "b", "c", "d"}) {
    NewTask task{.queue = "q",
                 .task_id = id,
                 .payload = "p",
                 .headers = {},
                 .due_time = clock.Now() + absl::Seconds(1),
                 .retry_policy = two_attempts};
    uint64_t plain_lsn = 0;
    absl::StatusOr<ScheduleResult> p = plain.Schedule(task, &plain_lsn);
    absl::StatusOr<ScheduleResult> l = logged.Schedule(task);
    ASSERT_TRUE(p.ok() && l.ok());
    EXPECT_EQ(p->due_time, l->due_time);
    EXPECT_EQ(plain_lsn, 0u);
  }
  expect_same("scheduled");
  clock.Advance(absl::Seconds(1));
  expect_same("ready");

  uint64_t plain_lsn = 0;
  std::vector<LeasedTask> p = plain.Lease("q", 3, absl::Seconds(5), &plain_lsn);
  std::vector<LeasedTask> l = logged.Lease("q", 3, absl::Seconds(5));
  EXPECT_EQ(plain_lsn, 0u);
  ASSERT_EQ(p.size(), 3u);
  ASSERT_EQ(l.size(), 3u);
  expect_same("leased");
  ASSERT_TRUE(plain.Ack(p[0].task_id, p[0].lease_token, &plain_lsn).ok());
  ASSERT_TRUE(logged.Ack(l[0].task_id, l[0].lease_token).ok());
  ASSERT_TRUE(plain.Nack(p[1].task_id, p[1].lease_token, std::nullopt, "e", &plain_lsn).ok());
  ASSERT_TRUE(logged.Nack(l[1].task_id, l[1].lease_token, std::nullopt, "e").ok());
  ASSERT_TRUE(plain.ExtendLease(p[2].task_id, p[2].lease_token, absl::Seconds(9), &plain_lsn).ok());
  ASSERT_TRUE(logged.ExtendLease(l[2].task_id, l[2].lease_token, absl::Seconds(9)).ok());
  ASSERT_TRUE(plain.Reschedule("d", clock.Now() + absl::Seconds(2), &plain_lsn).ok());
  ASSERT_TRUE(logged.Reschedule("d", clock.Now() + absl::Seconds(2)).ok());
  EXPECT_EQ(plain_lsn, 0u);
  expect_same("acked, nacked, extended, rescheduled");
  for (int second = 0; second < 30; ++second) {
    clock.Advance(absl::Seconds(1));
    expect_same(absl::StrCat("second ", second));
  }
  // a was forgotten; b, c (after its lease expired) and d wait READY.
  EXPECT_EQ(plain.size(), 3u);
  EXPECT_EQ(logged.size(), 3u);
  EXPECT_GT(log.last_lsn(), 0u);
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Randomized runs: recovery from the log, and from fuzzy snapshots plus the log.

// What the test knows of a task it scheduled: what only Lease and Schedule can show.
struct TaskContent {
  std::string queue;
  std::string payload;
  Headers headers;
  absl::Time first_due_time;  // as Schedule answered it
};

// One randomized run: random operations over three queues and a pool of task ids (so ids are
// forgotten and scheduled again, often in another queue), random clock advances delivering due
// timers, and at random points a check that a store rebuilt from the records equals the live
// one. Every operation's records are checked as it is made: count, LSNs, kind, task and content.
class ReplayRun {
 public:
  explicit ReplayRun(uint64_t seed) : rng_(seed) {}

  std::map<std::string, int64_t> stats;

  void RandomOp() {
    const int pick = Uniform(0, 99);
    if (pick < 24) {
      DoSchedule();
    } else if (pick < 31) {
      DoCancel();
    } else if (pick < 38) {
      DoReschedule();
    } else if (pick < 53) {
      DoLease();
    } else if (pick < 64) {
      DoAck();
    } else if (pick < 72) {
      DoNack();
    } else if (pick < 78) {
      DoExtendLease();
    } else {
      DoTick();
    }
  }

  // Runs `ops` operations; before each, with probability 1/`check_one_in`, calls `check`.
  template <typename Check>
  void Run(int ops, int check_one_in, Check check) {
    for (int i = 0; i < ops && !::testing::Test::HasFailure(); ++i) {
      if (Uniform(1, check_one_in) == 1) check();
      RandomOp();
    }
  }

  // Recovery from the whole log.
  void CheckRecoveryFromLog() { CheckRecovery({}, log_.All()); }

  // Records are absolute: replaying the whole log twice converges on the same store.
  void CheckReplayingTheLogTwice() {
    const std::vector<LogRecord> all = log_.All();
    CheckRecovery(all, all);
  }

  // A fuzzy snapshot: chunks of up to `max_chunk` tasks with up to `max_ops_between` random
  // operations between them and a few after the last; then recovery from the snapshot followed by
  // the records after L, the last LSN appended before the first chunk.
  void FuzzySnapshotAndCheck(int max_chunk, int max_ops_between) {
    const uint64_t start_lsn = log_.last_lsn();
    std::vector<LogRecord> snapshot;
    size_t cursor = 0;
    in_snapshot_ = true;
    for (;;) {
      const uint64_t before = log_.last_lsn();
      const size_t first = snapshot.size();
      const size_t max_tasks = static_cast<size_t>(Uniform(1, max_chunk));
      const bool more = live_store_.SnapshotChunk(&cursor, max_tasks, &snapshot);
      ++stats["snapshot_chunks"];
      EXPECT_EQ(log_.last_lsn(), before) << "SnapshotChunk logged a record";
      for (size_t i = first; i < snapshot.size(); ++i) {
        ASSERT_TRUE(snapshot[i].has_put()) << snapshot[i].ShortDebugString();
      }
      if (!more) {
        EXPECT_LE(snapshot.size() - first, max_tasks);
        break;
      }
      // A chunk short of max_tasks reached the last slot: only the last chunk may be short.
      EXPECT_EQ(snapshot.size() - first, max_tasks);
      const int ops = Uniform(0, max_ops_between);
      for (int i = 0; i < ops; ++i) RandomOp();
      if (::testing::Test::HasFailure()) return;
    }
    in_snapshot_ = false;
    const int ops_after = Uniform(0, 10);
    for (int i = 0; i < ops_after; ++i) RandomOp();
    ++stats["snapshots"];
    stats["snapshot_puts"] += static_cast<int64_t>(snapshot.size());
    CheckRecovery(snapshot, log_.After(start_lsn));
  }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  absl::Duration RandomMs(int lo, int hi) { return absl::Milliseconds(Uniform(lo, hi)); }

  // A task id to act on: mostly a live one, sometimes a forgotten one or one never used.
  std::string PickId() {
    const int pick = Uniform(0, 9);
    if (pick < 7 && !live_.empty()) {
      return std::next(live_.begin(), Uniform(0, static_cast<int>(live_.size()) - 1))->first;
    }
    if (pick < 9 && !gone_.empty()) {
      return std::next(gone_.begin(), Uniform(0, static_cast<int>(gone_.size()) - 1))->first;
    }
    return absl::StrCat("task-", Uniform(0, kIdPool - 1));
  }

  // A (task_id, lease_token) to Ack, Nack or extend: mostly a current lease's, sometimes a recent
  // one's, which may be stale, and now and then a wrong token.
  std::pair<std::string, std::string> PickLease() {
    const int pick = Uniform(0, 9);
    if (pick < 6) {
      std::vector<std::pair<std::string, std::string>> current;
      for (const auto& [id, token] : token_of_) {
        absl::StatusOr<TaskInfo> info = live_store_.Get(id);
        if (info.ok() && info->state == TaskState::kLeased) current.emplace_back(id, token);
      }
      if (!current.empty()) return current[Uniform(0, static_cast<int>(current.size()) - 1)];
    }
    if (pick < 9 && !tokens_.empty()) {
      return tokens_[Uniform(0, static_cast<int>(tokens_.size()) - 1)];
    }
    return {PickId(), "not-a-token"};
  }

  // The call made no change: no record, *lsn untouched at 0.
  void ExpectNothingLogged(uint64_t before, uint64_t lsn) {
    EXPECT_EQ(log_.last_lsn(), before);
    EXPECT_EQ(lsn, 0u);
  }

  // The record at `lsn` is an update of `task_id` saying exactly what the live Get() says.
  void ExpectUpdateOf(uint64_t lsn, absl::string_view task_id) {
    const LogRecord record = log_.At(lsn);
    ASSERT_TRUE(record.has_update()) << record.ShortDebugString();
    EXPECT_EQ(record.update().task_id(), task_id);
    absl::StatusOr<TaskInfo> info = live_store_.Get(task_id);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(StateView(record.update()), StateView(*info));
    if (info->state == TaskState::kLeased) {
      EXPECT_EQ(record.update().lease_token(), token_of_[std::string(task_id)]);
    }
  }

  // A call that succeeded made exactly one update of `task_id`, and answered its LSN.
  void ExpectOneUpdate(uint64_t before, uint64_t lsn, absl::string_view task_id) {
    ASSERT_EQ(log_.last_lsn(), before + 1);
    EXPECT_EQ(lsn, before + 1);
    ExpectUpdateOf(before + 1, task_id);
  }

  void DoSchedule() {
    NewTask task;
    const bool generated = Uniform(0, 9) == 0;
    if (!generated) task.task_id = absl::StrCat("task-", Uniform(0, kIdPool - 1));
    auto existing = generated ? live_.end() : live_.find(task.task_id);
    if (existing != live_.end() && Uniform(0, 1) == 0) {
      task.queue = existing->second.queue;
      task.payload = existing->second.payload;
      task.headers = existing->second.headers;
    } else {
      task.queue = std::string(kQueues[Uniform(0, 2)]);
      task.payload = absl::StrCat("payload-", Uniform(0, 2));
      const int headers = Uniform(0, 2);
      for (int i = 0; i < headers; ++i) {
        task.headers.emplace_back(absl::StrCat("h", i), absl::StrCat("v", Uniform(0, 99)));
      }
    }
    task.due_time = clock_.Now() + RandomMs(-1000, 4000);
    task.retry_policy = {.max_attempts = Uniform(1, 4),
                         .min_backoff = RandomMs(50, 500),
                         .max_backoff = RandomMs(1000, 3000)};
    const uint64_t before = log_.last_lsn();
    uint64_t lsn = 0;
    absl::StatusOr<ScheduleResult> result = live_store_.Schedule(task, &lsn);
    if (existing != live_.end()) {
      if (existing->second.queue == task.queue && existing->second.payload == task.payload) {
        ASSERT_TRUE(result.ok()) << result.status();
        EXPECT_FALSE(result->created);
        EXPECT_EQ(result->due_time, existing->second.first_due_time);
        // Nothing logged; answered with the original put's LSN (no sooner than the original).
        EXPECT_EQ(log_.last_lsn(), before);
        ASSERT_NE(lsn, 0u);
        EXPECT_EQ(log_.At(lsn).put().task_id(), task.task_id);
        ++stats["schedule_repeat"];
        return;
      }
      EXPECT_EQ(result.status().code(), absl::StatusCode::kAlreadyExists) << result.status();
      ++stats["schedule_already_exists"];
      ExpectNothingLogged(before, lsn);
      return;
    }
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result->created);
    ASSERT_EQ(log_.last_lsn(), before + 1);
    EXPECT_EQ(lsn, before + 1);
    const LogRecord record = log_.At(before + 1);
    ASSERT_TRUE(record.has_put()) << record.ShortDebugString();
    const TaskPut& put = record.put();
    EXPECT_EQ(put.task_id(), result->task_id);
    EXPECT_EQ(put.queue(), task.queue);
    EXPECT_EQ(put.payload(), task.payload);
    EXPECT_EQ(HeadersOf(put), task.headers);
    EXPECT_EQ(put.first_due_time_unix_nanos(), absl::ToUnixNanos(result->due_time));
    absl::StatusOr<TaskInfo> info = live_store_.Get(result->task_id);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(StateView(put.state()), StateView(*info));

    ++stats["schedule_new"];
    if (in_snapshot_) {
      // slots_ only grows when every slot is taken, so it holds as many as the peak size: below
      // the peak, the new task takes a freed slot, behind or ahead of the snapshot's cursor.
      if (live_.size() < peak_size_) ++stats["snapshot_slot_reuse"];
      auto gone = gone_.find(result->task_id);
      if (gone != gone_.end() && gone->second != task.queue) {
        ++stats["snapshot_reput_in_other_queue"];
      }
    }
    live_[result->task_id] = {task.queue, task.payload, task.headers, result->due_time};
    gone_.erase(result->task_id);
    peak_size_ = std::max(peak_size_, live_.size());
  }

  void DoCancel() {
    const std::string id = PickId();
    const uint64_t before = log_.last_lsn();
    uint64_t lsn = 0;
    absl::StatusOr<TaskInfo> result = live_store_.Cancel(id, &lsn);
    if (result.ok()) {
      ExpectOneUpdate(before, lsn, id);
      ++stats["cancel"];
    } else {
      ExpectNothingLogged(before, lsn);
      ++stats["cancel_failed"];
    }
  }

  void DoReschedule() {
    const std::string id = PickId();
    const uint64_t before = log_.last_lsn();
    uint64_t lsn = 0;
    absl::StatusOr<TaskInfo> result =
        live_store_.Reschedule(id, clock_.Now() + RandomMs(-500, 4000), &lsn);
    if (result.ok()) {
      ExpectOneUpdate(before, lsn, id);
      ++stats["reschedule"];
    } else {
      ExpectNothingLogged(before, lsn);
      ++stats["reschedule_failed"];
    }
  }

  void DoLease() {
    const std::string queue(kQueues[Uniform(0, 2)]);
    const uint64_t before = log_.last_lsn();
    uint64_t lsn = 0;
    std::vector<LeasedTask> leased =
        live_store_.Lease(queue, Uniform(1, 4), RandomMs(300, 4000), &lsn);
    ASSERT_EQ(log_.last_lsn(), before + leased.size());
    if (leased.empty()) {
      EXPECT_EQ(lsn, 0u);
      ++stats["lease_none"];
      return;
    }
    EXPECT_EQ(lsn, before + leased.size());
    for (size_t i = 0; i < leased.size(); ++i) {
      const LeasedTask& t = leased[i];
      auto content = live_.find(t.task_id);
      ASSERT_NE(content, live_.end()) << t.task_id;
      EXPECT_EQ(t.queue, queue);
      EXPECT_EQ(t.payload, content->second.payload) << t.task_id;
      EXPECT_EQ(t.headers, content->second.headers) << t.task_id;
      token_of_[t.task_id] = t.lease_token;
      ExpectUpdateOf(before + 1 + i, t.task_id);
      tokens_.emplace_back(t.task_id, t.lease_token);
      if (tokens_.size() > 64) tokens_.erase(tokens_.begin());
    }
    stats["lease"] += static_cast<int64_t>(leased.size());
    if (in_snapshot_) stats["snapshot_lease"] += static_cast<int64_t>(leased.size());
  }

  void DoAck() {
    const auto [id, token] = PickLease();
    const uint64_t before = log_.last_lsn();
    uint64_t lsn = 0;
    absl::StatusOr<TaskInfo> result = live_store_.Ack(id, token, &lsn);
    if (result.ok()) {
      ExpectOneUpdate(before, lsn, id);
      ++stats["ack"];
      if (in_snapshot_) ++stats["snapshot_ack"];
    } else {
      ExpectNothingLogged(before, lsn);
      ++stats["ack_failed"];
    }
  }

  void DoNack() {
    const auto [id, token] = PickLease();
    std::optional<absl::Duration> retry_delay;
    if (Uniform(0, 1) == 0) retry_delay = RandomMs(0, 3000);
    const uint64_t before = log_.last_lsn();
    uint64_t lsn = 0;
    absl::StatusOr<TaskInfo> result =
        live_store_.Nack(id, token, retry_delay, absl::StrCat("error-", Uniform(0, 9)), &lsn);
    if (result.ok()) {
      ExpectOneUpdate(before, lsn, id);
      ++stats[result->state == TaskState::kDead ? "nack_dead" : "nack_retry"];
    } else {
      ExpectNothingLogged(before, lsn);
      ++stats["nack_failed"];
    }
  }

  void DoExtendLease() {
    const auto [id, token] = PickLease();
    const uint64_t before = log_.last_lsn();
    uint64_t lsn = 0;
    absl::StatusOr<absl::Time> result =
        live_store_.ExtendLease(id, token, RandomMs(300, 4000), &lsn);
    if (result.ok()) {
      ExpectOneUpdate(before, lsn, id);
      ++stats["extend_lease"];
    } else {
      ExpectNothingLogged(before, lsn);
      ++stats["extend_lease_failed"];
    }
  }

  void DoTick() {
    clock_.Advance(Uniform(0, 9) == 0 ? absl::ZeroDuration() : RandomMs(1, 1500));
    FireLive();
  }

  // Delivers every timer due now to the live store, checking each one's records.
  void FireLive() {
    for (;;) {
      std::vector<uint64_t> cookies = timers_.FireDue(clock_.Now());
      if (cookies.empty()) return;
      for (uint64_t cookie : cookies) {
        const uint64_t before = log_.last_lsn();
        const TimerOutcome outcome = live_store_.OnTimer(cookie);
        switch (outcome.kind) {
          case Kind::kStale:
            ADD_FAILURE() << "FakeTimers never delivers an outdated cookie";
            break;
          case Kind::kReady:
            EXPECT_EQ(log_.last_lsn(), before) << "SCHEDULED -> READY was logged";
            ++stats["ready"];
            break;
          case Kind::kLeaseRetry:
          case Kind::kLeaseDead:
            ASSERT_EQ(log_.last_lsn(), before + 1);
            ExpectUpdateOf(before + 1, outcome.task_id);
            ++stats[outcome.kind == Kind::kLeaseDead ? "lease_dead" : "lease_retry"];
            break;
          case Kind::kForgotten: {
            ASSERT_EQ(log_.last_lsn(), before + 1);
            const LogRecord record = log_.At(before + 1);
            ASSERT_TRUE(record.has_forget()) << record.ShortDebugString();
            EXPECT_EQ(record.forget().task_id(), outcome.task_id);
            EXPECT_EQ(live_store_.Get(outcome.task_id).status().code(),
                      absl::StatusCode::kNotFound);
            gone_[outcome.task_id] = outcome.queue;
            live_.erase(outcome.task_id);
            token_of_.erase(outcome.task_id);
            ++stats["forgotten"];
            if (in_snapshot_) ++stats["snapshot_forgotten"];
            break;
          }
        }
      }
    }
  }

  // Delivers what is due on the live store, rebuilds a store from `snapshot` then `log_records`,
  // and checks it against the live one: ExpectRecoveredEqualsLive, then what only Schedule, Ack
  // and Lease can show (idempotency answers, lease tokens, ready lists, payloads and headers).
  void CheckRecovery(const std::vector<LogRecord>& snapshot,
                     const std::vector<LogRecord>& log_records) {
    FireLive();
    if (::testing::Test::HasFailure()) return;
    const absl::Time now = clock_.Now();
    std::unique_ptr<RecoveredStore> recovered = Recover(clock_, snapshot, log_records);
    std::vector<std::string> live_ids;
    for (const auto& [id, content] : live_) live_ids.push_back(id);
    std::vector<std::string> gone_ids;
    for (const auto& [id, queue] : gone_) gone_ids.push_back(id);
    ExpectRecoveredEqualsLive(live_store_, *recovered, now, live_ids, gone_ids);
    if (::testing::Test::HasFailure()) return;
    TaskStore& store = recovered->store;

    // Idempotent Schedule repeats answer the same on both, and neither logs anything.
    const uint64_t live_lsn = log_.last_lsn();
    for (int i = 0; i < 10 && !live_ids.empty(); ++i) {
      const std::string& id = live_ids[Uniform(0, static_cast<int>(live_ids.size()) - 1)];
      const TaskContent& content = live_.at(id);
      NewTask repeat{.queue = content.queue,
                     .task_id = id,
                     .payload = content.payload,
                     .headers = content.headers,
                     .due_time = now + RandomMs(0, 5000),
                     .retry_policy = {}};
      for (TaskStore* s : {&live_store_, &store}) {
        absl::StatusOr<ScheduleResult> r = s->Schedule(repeat);
        ASSERT_TRUE(r.ok()) << id << " " << r.status();
        EXPECT_FALSE(r->created) << id;
        EXPECT_EQ(r->due_time, content.first_due_time) << id;
      }
      NewTask other_payload = repeat;
      other_payload.payload += "!";
      NewTask other_queue = repeat;
      other_queue.queue += "!";
      for (TaskStore* s : {&live_store_, &store}) {
        EXPECT_EQ(s->Schedule(other_payload).status().code(), absl::StatusCode::kAlreadyExists);
        EXPECT_EQ(s->Schedule(other_queue).status().code(), absl::StatusCode::kAlreadyExists);
      }
    }
    EXPECT_EQ(log_.last_lsn(), live_lsn);
    EXPECT_EQ(recovered->log.last_lsn(), 0u);

    // Lease tokens handed out by the live store work on the recovered one (and only they).
    std::map<std::string, std::vector<std::string>> live_ready;  // by queue
    for (const std::string& id : live_ids) {
      absl::StatusOr<TaskInfo> info = live_store_.Get(id);
      ASSERT_TRUE(info.ok());
      if (info->state == TaskState::kReady) live_ready[info->queue].push_back(id);
      if (info->state != TaskState::kLeased) continue;
      const std::string& token = token_of_[id];
      EXPECT_EQ(store.Ack(id, "x" + token).status().code(), absl::StatusCode::kFailedPrecondition);
      absl::StatusOr<TaskInfo> acked = store.Ack(id, token);
      ASSERT_TRUE(acked.ok()) << id << " " << acked.status();
      EXPECT_EQ(acked->state, TaskState::kSucceeded);
      ++stats["checked_lease_tokens"];
    }

    // The ready lists hold the live READY tasks, oldest due first, with payloads and headers.
    for (absl::string_view queue : kQueues) {
      std::vector<LeasedTask> leased = store.Lease(queue, 1 << 20, absl::Minutes(1));
      std::vector<std::string> expected = live_ready[std::string(queue)];
      std::vector<std::string> got;
      for (size_t i = 0; i < leased.size(); ++i) {
        got.push_back(leased[i].task_id);
        auto content = live_.find(leased[i].task_id);
        ASSERT_NE(content, live_.end()) << leased[i].task_id;
        EXPECT_EQ(leased[i].payload, content->second.payload) << leased[i].task_id;
        EXPECT_EQ(leased[i].headers, content->second.headers) << leased[i].task_id;
        if (i > 0) {
          EXPECT_LE(leased[i - 1].due_time, leased[i].due_time) << leased[i].task_id;
        }
      }
      std::sort(expected.begin(), expected.end());
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, expected) << queue;
      stats["checked_ready"] += static_cast<int64_t>(got.size());
    }
    ++stats["checks"];
    stats["checked_tasks"] += static_cast<int64_t>(live_ids.size());
  }

  static constexpr int kIdPool = 150;

  std::mt19937_64 rng_;
  FakeClock clock_{kStart};
  FakeTimers timers_;
  RecordingLog log_;
  TaskStore live_store_{clock_, timers_, {.retention = kRetention}, &log_};

  std::map<std::string, TaskContent> live_;      // every task the live store has
  std::map<std::string, std::string> gone_;      // forgotten ids (not live) -> their last queue
  std::map<std::string, std::string> token_of_;  // task_id -> token of its latest lease
  std::vector<std::pair<std::string, std::string>> tokens_;  // recent leases, some stale
  size_t peak_size_ = 0;
  bool in_snapshot_ = false;
};

std::string StatsString(const std::map<std::string, int64_t>& stats) {
  std::string out;
  for (const auto& [name, count] : stats) absl::StrAppend(&out, name, "=", count, " ");
  return out;
}

// The core property: at random points of ~10k random operations (four seeds), a store rebuilt from
// the log so far equals the live store, task by task and field by field, once its overdue timers
// have fired at the same now; replaying the whole log twice converges on the same store.
TEST(TaskStoreReplayTest, RandomizedRunsRecoverExactlyFromTheLog) {
  for (uint64_t seed : {11u, 22u, 33u, 44u}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    ReplayRun run(seed);
    run.Run(10000, /*check_one_in=*/700, [&run] { run.CheckRecoveryFromLog(); });
    run.CheckRecoveryFromLog();
    run.CheckReplayingTheLogTwice();
    RecordProperty(absl::StrCat("seed_", seed), StatsString(run.stats));
    if (::testing::Test::HasFailure()) return;
    for (const char* what : {"schedule_new",
                             "schedule_repeat",
                             "schedule_already_exists",
                             "cancel",
                             "cancel_failed",
                             "reschedule",
                             "reschedule_failed",
                             "lease",
                             "lease_none",
                             "ack",
                             "ack_failed",
                             "nack_retry",
                             "nack_dead",
                             "nack_failed",
                             "extend_lease",
                             "extend_lease_failed",
                             "ready",
                             "lease_retry",
                             "lease_dead",
                             "forgotten",
                             "checked_lease_tokens",
                             "checked_ready"}) {
      EXPECT_GE(run.stats[what], 10) << what << " was not exercised enough";
    }
    EXPECT_GE(run.stats["checks"], 8);
    EXPECT_GE(run.stats["checked_tasks"], 300);
  }
}

// Fuzzy snapshots taken while random operations run between their chunks (four seeds, ~10k
// operations each, chunks of 1-5 tasks), replayed with every record after their start, equal the
// live store; the runs include ids forgotten and scheduled again in another queue while a snapshot
// runs, freed slots reused, and tasks leased and acked between chunks.
TEST(TaskStoreReplayTest, FuzzySnapshotsPlusTheLogAfterTheirStartRecoverExactly) {
  for (uint64_t seed : {101u, 202u, 303u, 404u}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    ReplayRun run(seed);
    run.Run(10000, /*check_one_in=*/600,
            [&run] { run.FuzzySnapshotAndCheck(/*max_chunk=*/5, /*max_ops_between=*/6); });
    run.FuzzySnapshotAndCheck(/*max_chunk=*/1, /*max_ops_between=*/3);
    run.FuzzySnapshotAndCheck(/*max_chunk=*/1000, /*max_ops_between=*/0);  // one consistent chunk
    RecordProperty(absl::StrCat("seed_", seed), StatsString(run.stats));
    if (::testing::Test::HasFailure()) return;
    EXPECT_GE(run.stats["snapshots"], 10);
    for (const char* what : {"snapshot_forgotten", "snapshot_reput_in_other_queue",
                             "snapshot_slot_reuse", "snapshot_lease", "snapshot_ack"}) {
      EXPECT_GE(run.stats[what], 10) << what << " was not exercised enough";
    }
  }
}

// The adversarial cases written out. Slots 0-5 hold a0-a5 (queue A). While a snapshot runs (chunks
// of 2): a2 is leased before its slot is visited and acked after; a3 is visited READY and leased
// after; a1 (visited CANCELLED in A) and a4 (not yet visited) are forgotten, then "a1" is scheduled
// in queue B into a4's freed slot, ahead of the cursor, and "a4" in queue C into a1's, behind it;
// a new task takes a new slot after the snapshot's end. Snapshot + log after L equals the live
// store.
TEST_F(TaskStoreLogTest, FuzzySnapshotSurvivesForgottenIdsReusedSlotsAndLeasesBetweenChunks) {
  for (int i = 0; i < 6; ++i) {
    const absl::Duration delay = (i == 2 || i == 3) ? absl::ZeroDuration() : absl::Hours(1);
    MustSchedule(Task("A", absl::StrCat("a", i), absl::StrCat("payload a", i), delay));
  }
  ASSERT_EQ(FireNow().size(), 2u);  // a2, a3 READY
  ASSERT_TRUE(store_.Cancel("a1").ok());
  ASSERT_TRUE(store_.Cancel("a4").ok());
  clock_.Advance(absl::Seconds(1));

  const uint64_t start_lsn = log_.last_lsn();
  std::vector<LogRecord> snapshot;
  size_t cursor = 0;
  ASSERT_TRUE(store_.SnapshotChunk(&cursor, 2, &snapshot));  // a0, a1 (CANCELLED)

  std::vector<LeasedTask> a2 = store_.Lease("A", 1, absl::Minutes(1));
  ASSERT_EQ(a2.size(), 1u);
  ASSERT_EQ(a2[0].task_id, "a2");
  std::vector<TimerOutcome> fired = Tick(kRetention);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0].kind, Kind::kForgotten);
  EXPECT_EQ(fired[1].kind, Kind::kForgotten);
  ASSERT_TRUE(store_.Schedule(Task("B", "a1", "payload of the new a1", absl::Seconds(30))).ok());
  ASSERT_TRUE(store_.Schedule(Task("C", "a4", "payload of the new a4", absl::Seconds(40))).ok());

  ASSERT_TRUE(store_.SnapshotChunk(&cursor, 2, &snapshot));  // a2 (LEASED), a3 (READY)
  ASSERT_TRUE(store_.Ack("a2", a2[0].lease_token).ok());
  std::vector<LeasedTask> a3 = store_.Lease("A", 1, absl::Minutes(1));
  ASSERT_EQ(a3.size(), 1u);
  ASSERT_EQ(a3[0].task_id, "a3");
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(store_.ExtendLease("a3", a3[0].lease_token, absl::Minutes(2)).ok());

  EXPECT_FALSE(store_.SnapshotChunk(&cursor, 2, &snapshot));  // the new a1 (B), a5
  MustSchedule(Task("A", "a6", "payload a6", absl::Seconds(5)));

  // The snapshot saw what this test is about (it depends on the store reusing the most recently
  // freed slot first): two incarnations of a1, none of a4, a2 LEASED and a3 READY.
  std::vector<std::string> seen;
  for (const LogRecord& record : snapshot) {
    ASSERT_TRUE(record.has_put());
    seen.push_back(
        absl::StrCat(record.put().task_id(), "/", record.put().queue(), "/",
                     TaskStateName(static_cast<TaskState>(record.put().state().state()))));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"a0/A/SCHEDULED", "a1/A/CANCELLED", "a2/A/LEASED",
                                            "a3/A/READY", "a1/B/SCHEDULED", "a5/A/SCHEDULED"}));

  std::unique_ptr<RecoveredStore> recovered = Recover(clock_, snapshot, log_.After(start_lsn));
  ExpectRecoveredEqualsLive(store_, *recovered, clock_.Now(),
                            {"a0", "a1", "a2", "a3", "a4", "a5", "a6"}, {});
  if (HasFailure()) return;
  absl::StatusOr<TaskInfo> a1 = recovered->store.Get("a1");
  ASSERT_TRUE(a1.ok());
  EXPECT_EQ(a1->queue, "B");
  EXPECT_EQ(a1->state, TaskState::kScheduled);
  absl::StatusOr<TaskInfo> a4 = recovered->store.Get("a4");
  ASSERT_TRUE(a4.ok());
  EXPECT_EQ(a4->queue, "C");
  EXPECT_EQ(GetOrFail(recovered->store, "a2").state, TaskState::kSucceeded);
  EXPECT_EQ(GetOrFail(recovered->store, "a3").state, TaskState::kLeased);
  EXPECT_TRUE(recovered->store.Ack("a3", a3[0].lease_token).ok());
  EXPECT_EQ(NonZeroCounts(recovered->store)["A"][static_cast<int>(TaskState::kSucceeded)], 2);
}

// ---------------------------------------------------------------------------------------------
// 4. Recovery's timers.

// After FinishRecovery, overdue SCHEDULED tasks (and a task that was READY) fire at once, oldest
// due first, and are leased in that order; a lease that ran out during the downtime expires at
// once, one still running expires at its lease_expire_time and not a millisecond before; finished
// tasks are forgotten at finish_time + retention; a future task fires at its due time.
TEST_F(TaskStoreLogTest, RecoveryArmsEveryTimerForItsState) {
  const absl::Time t0 = clock_.Now();
  const RetryPolicy retry{
      .max_attempts = 3, .min_backoff = absl::Seconds(2), .max_backoff = absl::Seconds(2)};
  // Slot order differs from due order.
  MustSchedule(Task("S", "s-late", "p", absl::Seconds(9)));
  MustSchedule(Task("S", "s-future", "p", absl::Seconds(100)));
  MustSchedule(Task("S", "s-early", "p", absl::Seconds(5)));
  MustSchedule(Task("S", "s-mid", "p", absl::Seconds(7)));
  MustSchedule(Task("R", "ready", "p", absl::ZeroDuration()));
  MustSchedule(Task("L", "leased", "p", absl::ZeroDuration(), retry));
  MustSchedule(Task("E", "expired", "p", absl::ZeroDuration(), retry));
  MustSchedule(Task("D", "done", "p", absl::ZeroDuration()));
  MustSchedule(Task("C", "cancelled", "p", absl::Hours(1)));
  ASSERT_EQ(FireNow().size(), 4u);
  std::vector<LeasedTask> leased = store_.Lease("L", 1, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 1u);
  ASSERT_EQ(store_.Lease("E", 1, absl::Seconds(12)).size(), 1u);
  std::vector<LeasedTask> done = store_.Lease("D", 1, absl::Minutes(1));
  ASSERT_EQ(done.size(), 1u);
  ASSERT_TRUE(store_.Ack("done", done[0].lease_token).ok());  // forgotten at t0 + 10s
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(store_.Cancel("cancelled").ok());  // forgotten at t0 + 11s
  EXPECT_EQ(MustGet("ready").state, TaskState::kReady);

  // The process stops; it recovers at t0 + 13s.
  clock_.Advance(absl::Seconds(12));
  std::unique_ptr<RecoveredStore> recovered = Recover(clock_, {}, log_.All());
  TaskStore& store = recovered->store;
  EXPECT_EQ(store.size(), 9u);
  EXPECT_EQ(GetOrFail(store, "ready").state, TaskState::kScheduled);  // READY is not logged

  std::vector<TimerOutcome> fired = recovered->FireDue(clock_.Now());
  std::vector<std::string> order;
  for (const TimerOutcome& o : fired)
    order.push_back(absl::StrCat(o.task_id, ":", KindName(o.kind)));
  EXPECT_EQ(order, (std::vector<std::string>{
                       "ready:kReady",          // due t0
                       "s-early:kReady",        // due t0 + 5s
                       "s-mid:kReady",          // due t0 + 7s
                       "s-late:kReady",         // due t0 + 9s
                       "done:kForgotten",       // t0 + 0s + 10s
                       "cancelled:kForgotten",  // t0 + 1s + 10s
                       "expired:kLeaseRetry",   // lease ran out at t0 + 12s
                   }));
  ASSERT_EQ(fired.size(), 7u);
  EXPECT_EQ(fired[0].lateness, absl::Seconds(13));
  EXPECT_EQ(fired[1].lateness, absl::Seconds(8));
  EXPECT_EQ(fired[3].lateness, absl::Seconds(4));
  std::vector<std::string> leased_ids;
  for (const LeasedTask& t : store.Lease("S", 10, absl::Minutes(5)))
    leased_ids.push_back(t.task_id);
  EXPECT_EQ(leased_ids, (std::vector<std::string>{"s-early", "s-mid", "s-late"}));

  absl::StatusOr<TaskInfo> expired = store.Get("expired");
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(expired->state, TaskState::kScheduled);
  EXPECT_EQ(expired->attempts, 1);
  EXPECT_EQ(expired->due_time, clock_.Now() + absl::Seconds(2));
  EXPECT_TRUE(absl::StartsWith(expired->last_error, "lease expired at ")) << expired->last_error;
  EXPECT_EQ(store.Get("done").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Get("cancelled").status().code(), absl::StatusCode::kNotFound);
  // The recovered store logs its own changes from now on: 2 forgets, 1 expiry, 3 leases.
  EXPECT_EQ(recovered->log.last_lsn(), 6u);

  // The running lease ends at t0 + 30s, not before.
  clock_.Advance(absl::Seconds(17) - kMs);
  for (const TimerOutcome& o : recovered->FireDue(clock_.Now())) {
    EXPECT_NE(o.task_id, "leased") << "the lease expired early";
  }
  EXPECT_EQ(GetOrFail(store, "leased").state, TaskState::kLeased);
  EXPECT_EQ(GetOrFail(store, "leased").lease_expire_time, t0 + absl::Seconds(30));
  clock_.Advance(kMs);
  fired = recovered->FireDue(clock_.Now());
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].task_id, "leased");
  EXPECT_EQ(fired[0].kind, Kind::kLeaseRetry);

  // The future task fires at its due time, not before.
  clock_.Advance(absl::Seconds(70) - kMs);
  for (const TimerOutcome& o : recovered->FireDue(clock_.Now())) {
    EXPECT_NE(o.task_id, "s-future") << "fired early";
  }
  clock_.Advance(kMs);
  bool future_fired = false;
  for (const TimerOutcome& o : recovered->FireDue(clock_.Now())) {
    if (o.task_id == "s-future" && o.kind == Kind::kReady) future_fired = true;
  }
  EXPECT_TRUE(future_fired);
}

// A finished task whose retention has not ended at recovery is forgotten at finish_time +
// retention exactly, and answers idempotent repeats until then.
TEST_F(TaskStoreLogTest, RecoveredFinishedTaskIsForgottenAtTheEndOfItsRetention) {
  const ScheduleResult first = MustSchedule(Task("q", "f", "payload", absl::Hours(1)));
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(store_.Cancel("f").ok());
  const absl::Time finish = clock_.Now();
  clock_.Advance(absl::Seconds(3));

  std::unique_ptr<RecoveredStore> recovered = Recover(clock_, {}, log_.All());
  EXPECT_TRUE(recovered->FireDue(clock_.Now()).empty());
  absl::StatusOr<ScheduleResult> repeat =
      recovered->store.Schedule(Task("q", "f", "payload", absl::Minutes(5)));
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_FALSE(repeat->created);
  EXPECT_EQ(repeat->due_time, first.due_time);
  EXPECT_EQ(GetOrFail(recovered->store, "f").finish_time, finish);

  clock_.Advance(finish + kRetention - clock_.Now() - kMs);
  EXPECT_TRUE(recovered->FireDue(clock_.Now()).empty());
  clock_.Advance(kMs);
  std::vector<TimerOutcome> fired = recovered->FireDue(clock_.Now());
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kForgotten);
  EXPECT_EQ(recovered->store.Get("f").status().code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Push tasks (their targets), claims, push outcomes, a RetryTask and a DEAD task's payload all
// come back from the log and from a snapshot exactly; a recovered push claim expires at its time.
TEST_F(TaskStoreLogTest, PushTasksClaimsAndRetriesRecoverExactly) {
  const RetryPolicy retry{
      .max_attempts = 2, .min_backoff = absl::Seconds(1), .max_backoff = absl::Seconds(1)};
  PushTarget http;
  http.kind = PushTarget::Kind::kHttp;
  http.url = "https://example.com/hook";
  http.http_headers = {{"Authorization", "Bearer x"}, {"Content-Type", "application/json"}};
  http.dispatch_deadline = absl::Seconds(20);
  PushTarget grpc;
  grpc.kind = PushTarget::Kind::kGrpc;
  grpc.address = "billing.internal:443";
  grpc.method = "/billing.v1.Invoices/Close";
  grpc.tls = true;
  NewTask in_flight = Task("push", "in-flight", "p1", absl::ZeroDuration(), retry);
  in_flight.target = http;
  MustSchedule(in_flight);
  NewTask later = Task("push", "later", "p2", absl::Hours(1), retry);
  later.target = grpc;
  MustSchedule(later);
  NewTask dead = Task("push", "dead", "p3", absl::ZeroDuration(), retry);
  dead.target = http;
  MustSchedule(dead);
  MustSchedule(Task("pull", "revived", "p4", absl::ZeroDuration(), retry));
  ASSERT_EQ(FireNow().size(), 3u);
  std::optional<PushTask> first = store_.ClaimPush("push");
  ASSERT_TRUE(first.has_value());
  std::optional<PushTask> second = store_.ClaimPush("push");
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->task_id, "dead");
  ASSERT_TRUE(store_
                  .FinishPush("dead", second->lease_token,
                              {.kind = PushOutcome::Kind::kDead, .error = "HTTP 404"})
                  .ok());
  std::vector<LeasedTask> leased = store_.Lease("pull", 1, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 1u);
  ASSERT_TRUE(store_.Nack("revived", leased[0].lease_token, std::nullopt, "no").ok());
  Tick(absl::Seconds(1));
  leased = store_.Lease("pull", 1, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 1u);
  ASSERT_TRUE(store_.Nack("revived", leased[0].lease_token, std::nullopt, "no again").ok());
  ASSERT_EQ(MustGet("revived").state, TaskState::kDead);
  ASSERT_TRUE(store_.Retry("revived").ok());
  ASSERT_EQ(FireNow().size(), 1u);  // due at once: READY
  EXPECT_EQ(MustGet("revived").state, TaskState::kReady);
  EXPECT_EQ(MustGet("in-flight").state, TaskState::kLeased);

  const std::vector<std::string> ids = {"in-flight", "later", "dead", "revived"};
  std::unique_ptr<RecoveredStore> from_log = Recover(clock_, {}, log_.All());
  ExpectRecoveredEqualsLive(store_, *from_log, clock_.Now(), ids, {});

  std::vector<LogRecord> snapshot;
  size_t cursor = 0;
  while (store_.SnapshotChunk(&cursor, 2, &snapshot)) {
  }
  std::unique_ptr<RecoveredStore> from_snapshot = Recover(clock_, snapshot, {});
  ExpectRecoveredEqualsLive(store_, *from_snapshot, clock_.Now(), ids, {});
  EXPECT_EQ(MustGet("later").target, grpc);

  // The DEAD push task kept its payload: a retry delivers it again.
  ASSERT_TRUE(from_log->store.Retry("dead").ok());
  clock_.Advance(absl::Milliseconds(1));
  for (uint64_t cookie : from_log->timers.FireDue(clock_.Now())) from_log->store.OnTimer(cookie);
  std::optional<PushTask> again = from_log->store.ClaimPush("push");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->task_id, "dead");
  EXPECT_EQ(again->payload, "p3");
  EXPECT_EQ(again->target, http);
}

// 5. Replay's validation.

// Replay refuses records that make no sense (no change, a put without task_id or queue, a state
// outside 1..6 in a put or an update) with INVALID_ARGUMENT and without changing the store; an
// update or forget of an unknown task is skipped with OK.
TEST(TaskStoreReplayValidationTest, RejectsNonsenseAndSkipsUnknownTasks) {
  FakeClock clock(kStart);
  RecoveredStore recovered(clock);
  TaskStore& store = recovered.store;

  LogRecord good;
  TaskPut* put = good.mutable_put();
  put->set_task_id("t");
  put->set_queue("q");
  put->set_payload("p");
  put->set_payload_size_bytes(1);
  put->set_create_time_unix_nanos(absl::ToUnixNanos(kStart));
  put->set_first_due_time_unix_nanos(absl::ToUnixNanos(kStart + absl::Seconds(5)));
  put->set_max_attempts(3);
  put->set_min_backoff_nanos(absl::ToInt64Nanoseconds(absl::Seconds(1)));
  put->set_max_backoff_nanos(absl::ToInt64Nanoseconds(absl::Seconds(9)));
  put->mutable_state()->set_task_id("t");
  put->mutable_state()->set_state(static_cast<int32_t>(TaskState::kScheduled));
  put->mutable_state()->set_due_time_unix_nanos(absl::ToUnixNanos(kStart + absl::Seconds(5)));
  ASSERT_TRUE(store.Replay(good).ok());
  const std::string before = Describe(GetOrFail(store, "t"));

  std::vector<std::pair<std::string, LogRecord>> nonsense;
  nonsense.emplace_back("empty record", LogRecord());
  for (int32_t state : {0, 7, 9, -1}) {
    LogRecord bad_put = good;
    bad_put.mutable_put()->set_task_id(absl::StrCat("other-", state));
    bad_put.mutable_put()->mutable_state()->set_state(state);
    nonsense.emplace_back(absl::StrCat("put with state ", state), bad_put);
    LogRecord bad_update;
    bad_update.mutable_update()->set_task_id("t");
    bad_update.mutable_update()->set_state(state);
    nonsense.emplace_back(absl::StrCat("update with state ", state), bad_update);
  }
  LogRecord no_id = good;
  no_id.mutable_put()->clear_task_id();
  nonsense.emplace_back("put without task_id", no_id);
  LogRecord no_queue = good;
  no_queue.mutable_put()->set_task_id("other-no-queue");
  no_queue.mutable_put()->clear_queue();
  nonsense.emplace_back("put without queue", no_queue);
  for (const auto& [what, record] : nonsense) {
    EXPECT_EQ(store.Replay(record).code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_EQ(store.size(), 1u) << what;
    EXPECT_EQ(Describe(GetOrFail(store, "t")), before) << what;
  }

  LogRecord unknown_update;
  unknown_update.mutable_update()->set_task_id("unknown");
  unknown_update.mutable_update()->set_state(static_cast<int32_t>(TaskState::kSucceeded));
  EXPECT_TRUE(store.Replay(unknown_update).ok());
  LogRecord unknown_forget;
  unknown_forget.mutable_forget()->set_task_id("unknown");
  EXPECT_TRUE(store.Replay(unknown_forget).ok());
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.Get("unknown").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Describe(GetOrFail(store, "t")), before);

  // The store recovers normally after the refused records.
  store.FinishRecovery();
  EXPECT_EQ(recovered.timers.size(), 1u);
  EXPECT_EQ(NonZeroCounts(store)["q"][static_cast<int>(TaskState::kScheduled)], 1);
  clock.Advance(absl::Seconds(5));
  std::vector<TimerOutcome> fired = recovered.FireDue(clock.Now());
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].kind, Kind::kReady);
  EXPECT_EQ(recovered.log.last_lsn(), 0u);
}

// A record whose timer would lie beyond the timing wheel's horizon (a corrupt record, or a clock
// set back by years) is refused with a message, not armed (which ended the process: found by the
// log reader fuzzer).
TEST(TaskStoreReplayValidationTest, RefusesTimersBeyondTheHorizon) {
  FakeClock clock(kStart);
  FakeTimers timers;
  TaskStore store(clock, timers, {.retention = absl::Hours(24)});
  const absl::Duration horizon = absl::Milliseconds(TimingWheel::kHorizonMs);
  auto put_due = [&](const std::string& id, absl::Time due) {
    LogRecord record;
    TaskPut* put = record.mutable_put();
    put->set_task_id(id);
    put->set_queue("q");
    put->mutable_state()->set_task_id(id);
    put->mutable_state()->set_state(static_cast<int32_t>(TaskState::kScheduled));
    put->mutable_state()->set_due_time_unix_nanos(absl::ToUnixNanos(due));
    return record;
  };
  EXPECT_TRUE(store.Replay(put_due("near", kStart + horizon - absl::Hours(2))).ok());
  absl::Status far = store.Replay(put_due("far", kStart + horizon));
  EXPECT_EQ(far.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(far.message(), "beyond the timing wheel's horizon")) << far;
  LogRecord update;
  update.mutable_update()->set_task_id("near");
  update.mutable_update()->set_state(static_cast<int32_t>(TaskState::kLeased));
  update.mutable_update()->set_lease_expire_time_unix_nanos(
      absl::ToUnixNanos(kStart + horizon * 2));
  EXPECT_EQ(store.Replay(update).code(), absl::StatusCode::kInvalidArgument);
  store.FinishRecovery();  // arms "near" only; must not end the process
  EXPECT_EQ(store.size(), 1u);
}

}  // namespace
}  // namespace hourglass

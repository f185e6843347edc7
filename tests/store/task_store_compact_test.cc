// Tests of the TaskStore's compact task layout (issue 6, memory per pending task): a task is one
// allocation of a fixed part, its id and its payload, with a cold part only while it needs one;
// the payload of a SUCCEEDED or CANCELLED task is dropped (the record moves); the id index holds
// slot numbers. These tests check that every field survives every transition of that layout,
// that the cold part exists exactly when needed, and the extremes of ids and payloads.
//
// Time is simulated (FakeClock, FakeTimers), as in task_store_test.cc.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "store/task_log.h"
#include "store/task_store.h"
#include "tests/store/fake_timers.h"
#include "tests/store/task_info_describe.h"
#include "tests/testing/fake_clock.h"

namespace hourglass {
namespace {

using store::v1::LogRecord;

constexpr absl::Duration kRetention = absl::Hours(1);
// 2024-01-01T00:00:00Z.
const absl::Time kStart = absl::FromUnixSeconds(1704067200);

// Keeps every record, in order.
class RecordingLog : public TaskLog {
 public:
  uint64_t Append(const LogRecord& record) override {
    records.push_back(record);
    return records.size();
  }
  std::vector<LogRecord> records;
};

class TaskStoreCompactTest : public ::testing::Test {
 protected:
  NewTask Task(std::string task_id, std::string payload, absl::Duration delay) {
    NewTask task;
    task.queue = "q";
    task.task_id = std::move(task_id);
    task.payload = std::move(payload);
    task.due_time = clock_.Now() + delay;
    return task;
  }

  ScheduleResult MustSchedule(TaskStore& store, NewTask task) {
    absl::StatusOr<ScheduleResult> result = store.Schedule(std::move(task));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : ScheduleResult{};
  }

  std::vector<TimerOutcome> FireNow(TaskStore& store, FakeTimers& timers) {
    std::vector<TimerOutcome> outcomes;
    for (;;) {
      std::vector<uint64_t> cookies = timers.FireDue(clock_.Now());
      if (cookies.empty()) return outcomes;
      for (uint64_t cookie : cookies) outcomes.push_back(store.OnTimer(cookie));
    }
  }
  std::vector<TimerOutcome> FireNow() { return FireNow(store_, timers_); }

  TaskInfo MustGet(const TaskStore& store, absl::string_view task_id) {
    absl::StatusOr<TaskInfo> info = store.Get(task_id);
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? *info : TaskInfo{};
  }

  // A snapshot of `store` replayed into a new store: every task as Get() says it, READY read as
  // SCHEDULED (READY is not logged).
  void ExpectSnapshotRoundTrip(TaskStore& store, const std::vector<std::string>& ids) {
    std::vector<LogRecord> snapshot;
    size_t cursor = 0;
    while (store.SnapshotChunk(&cursor, 3, &snapshot)) {
    }
    FakeTimers timers;
    TaskStore recovered(clock_, timers, {.retention = kRetention});
    for (const LogRecord& record : snapshot) ASSERT_TRUE(recovered.Replay(record).ok());
    recovered.FinishRecovery();
    EXPECT_EQ(recovered.size(), store.size());
    for (const std::string& id : ids) {
      TaskInfo expected = MustGet(store, id);
      if (expected.state == TaskState::kReady) expected.state = TaskState::kScheduled;
      EXPECT_EQ(Describe(MustGet(recovered, id)), Describe(expected));
    }
    // And the recovered store's own snapshot says the same, record for record.
    std::vector<LogRecord> again;
    cursor = 0;
    while (recovered.SnapshotChunk(&cursor, 3, &again)) {
    }
    ASSERT_EQ(again.size(), snapshot.size());
    std::map<std::string, std::string> by_id;
    for (const LogRecord& record : snapshot) {
      LogRecord normalized = record;
      if (normalized.put().state().state() == static_cast<int>(TaskState::kReady)) {
        normalized.mutable_put()->mutable_state()->set_state(
            static_cast<int>(TaskState::kScheduled));
      }
      by_id[record.put().task_id()] = normalized.SerializeAsString();
    }
    for (const LogRecord& record : again) {
      EXPECT_EQ(by_id[record.put().task_id()], record.SerializeAsString())
          << record.ShortDebugString();
    }
  }

  FakeClock clock_{kStart};
  FakeTimers timers_;
  TaskStore store_{clock_, timers_, {.retention = kRetention}};
};

// A pending pull task with default options has no cold part; a lease, a finish time, headers, a
// push target, a non-default retry policy or a moved due time create one, and it is freed when
// the last of them is gone (or the task is forgotten).
TEST_F(TaskStoreCompactTest, ColdPartExistsExactlyWhileNeeded) {
  for (int i = 0; i < 10; ++i)
    MustSchedule(store_, Task(absl::StrCat("t", i), "p", absl::ZeroDuration()));
  EXPECT_EQ(store_.ColdPartsForTest(), 0u) << "SCHEDULED with defaults";
  FireNow();
  EXPECT_EQ(store_.ColdPartsForTest(), 0u) << "READY with defaults";

  std::vector<LeasedTask> leased = store_.Lease("q", 10, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 10u);
  EXPECT_EQ(store_.ColdPartsForTest(), 10u) << "LEASED: token and expiry";

  // A Nack with no error, due again at its first due time (now): nothing cold remains.
  ASSERT_TRUE(store_.Nack(leased[0].task_id, leased[0].lease_token, absl::ZeroDuration(), "").ok());
  EXPECT_EQ(store_.ColdPartsForTest(), 9u);
  TaskInfo nacked = MustGet(store_, leased[0].task_id);
  EXPECT_EQ(nacked.state, TaskState::kScheduled);
  EXPECT_EQ(nacked.attempts, 1);
  EXPECT_EQ(nacked.last_error, "");
  // With an error it stays.
  ASSERT_TRUE(
      store_.Nack(leased[1].task_id, leased[1].lease_token, absl::ZeroDuration(), "boom").ok());
  EXPECT_EQ(store_.ColdPartsForTest(), 9u);
  EXPECT_EQ(MustGet(store_, leased[1].task_id).last_error, "boom");

  // Acked: SUCCEEDED keeps its finish time, payload size and fingerprint in the cold part.
  for (size_t i = 2; i < leased.size(); ++i) {
    ASSERT_TRUE(store_.Ack(leased[i].task_id, leased[i].lease_token).ok());
  }
  EXPECT_EQ(store_.ColdPartsForTest(), 9u);
  // Rescheduling a SCHEDULED task keeps its first due time (for idempotent repeats) cold.
  ASSERT_TRUE(store_.Reschedule(leased[0].task_id, clock_.Now() + absl::Minutes(5)).ok());
  EXPECT_EQ(store_.ColdPartsForTest(), 10u);

  // Cancel both pending tasks, and let retention end: every cold part goes with its task.
  ASSERT_TRUE(store_.Cancel(leased[0].task_id).ok());
  ASSERT_TRUE(store_.Cancel(leased[1].task_id).ok());
  clock_.Advance(kRetention + absl::Seconds(1));
  FireNow();
  EXPECT_EQ(store_.size(), 0u);
  EXPECT_EQ(store_.ColdPartsForTest(), 0u);
}

// A task with every optional field (headers, a non-default retry policy) keeps each of them, and
// what Get() and a repeat of its Schedule answer, through every transition; a snapshot of the
// store at each step recovers it exactly.
TEST_F(TaskStoreCompactTest, EveryTransitionKeepsEveryField) {
  RecordingLog log;
  FakeTimers timers;
  TaskStore store(clock_, timers, {.retention = kRetention}, &log);
  const RetryPolicy policy{
      .max_attempts = 2, .min_backoff = absl::Seconds(3), .max_backoff = absl::Seconds(7)};
  NewTask full = Task("full", "payload bytes", absl::Seconds(10));
  full.headers = {{"k1", "v1"}, {"k2", ""}};
  full.retry_policy = policy;
  const NewTask repeat = full;
  const absl::Time first_due = full.due_time;
  MustSchedule(store, full);
  MustSchedule(store, Task("plain", "", absl::Seconds(10)));
  const std::vector<std::string> ids = {"full", "plain"};

  // The answer to a repeat, in every state: the first due time, created = false.
  auto expect_repeat = [&](absl::string_view when) {
    absl::StatusOr<ScheduleResult> again = store.Schedule(repeat);
    ASSERT_TRUE(again.ok()) << when << ": " << again.status();
    EXPECT_FALSE(again->created) << when;
    EXPECT_EQ(again->due_time, first_due) << when;
    NewTask other = repeat;
    other.payload = "other bytes";
    EXPECT_EQ(store.Schedule(other).status().code(), absl::StatusCode::kAlreadyExists) << when;
  };
  auto expect_info = [&](TaskState state, int32_t attempts, absl::string_view last_error,
                         absl::string_view when) {
    TaskInfo info = MustGet(store, "full");
    EXPECT_EQ(info.state, state) << when;
    EXPECT_EQ(info.attempts, attempts) << when;
    EXPECT_EQ(info.last_error, last_error) << when;
    EXPECT_EQ(info.create_time, kStart) << when;
    EXPECT_EQ(info.payload_size_bytes, 13) << when;
    EXPECT_EQ(info.retry_policy.max_attempts, 2) << when;
    EXPECT_EQ(info.retry_policy.min_backoff, absl::Seconds(3)) << when;
    EXPECT_EQ(info.retry_policy.max_backoff, absl::Seconds(7)) << when;
    EXPECT_FALSE(info.target.has_value()) << when;
    expect_repeat(when);
    ExpectSnapshotRoundTrip(store, ids);
  };

  expect_info(TaskState::kScheduled, 0, "", "scheduled");
  ASSERT_TRUE(store.Reschedule("full", kStart + absl::Seconds(20)).ok());
  EXPECT_EQ(MustGet(store, "full").due_time, kStart + absl::Seconds(20));
  expect_info(TaskState::kScheduled, 0, "", "rescheduled");

  clock_.Advance(absl::Seconds(20));
  FireNow(store, timers);
  expect_info(TaskState::kReady, 0, "", "ready");

  std::vector<LeasedTask> leased = store.Lease("q", 10, absl::Seconds(30));
  ASSERT_EQ(leased.size(), 2u);
  const LeasedTask& lease = leased[0].task_id == "full" ? leased[0] : leased[1];
  EXPECT_EQ(lease.payload, "payload bytes");
  EXPECT_EQ(lease.headers, full.headers);
  EXPECT_EQ(lease.attempt, 1);
  EXPECT_EQ(lease.due_time, kStart + absl::Seconds(20));
  EXPECT_EQ(MustGet(store, "full").lease_expire_time, clock_.Now() + absl::Seconds(30));
  expect_info(TaskState::kLeased, 1, "", "leased");

  absl::StatusOr<absl::Time> extended =
      store.ExtendLease("full", lease.lease_token, absl::Minutes(2));
  ASSERT_TRUE(extended.ok());
  EXPECT_EQ(*extended, clock_.Now() + absl::Minutes(2));
  EXPECT_EQ(MustGet(store, "full").lease_expire_time, *extended);

  ASSERT_TRUE(store.Nack("full", lease.lease_token, std::nullopt, "first failure").ok());
  EXPECT_EQ(MustGet(store, "full").due_time, clock_.Now() + absl::Seconds(3));
  expect_info(TaskState::kScheduled, 1, "first failure", "nacked");

  // The lease of the second attempt expires: the last attempt, so DEAD, payload kept.
  clock_.Advance(absl::Seconds(3));
  FireNow(store, timers);
  LeasedTask second = store.Lease("q", 1, absl::Seconds(5)).at(0);
  EXPECT_EQ(second.task_id, "full");
  EXPECT_EQ(second.headers, full.headers);
  clock_.Advance(absl::Seconds(5));
  FireNow(store, timers);
  TaskInfo dead = MustGet(store, "full");
  EXPECT_EQ(dead.finish_time, clock_.Now());
  EXPECT_NE(dead.last_error.find("lease expired"), std::string::npos) << dead.last_error;
  expect_info(TaskState::kDead, 2, dead.last_error, "dead");

  // Retry: SCHEDULED again, due now, attempts 0; the payload and headers are still there.
  ASSERT_TRUE(store.Retry("full").ok());
  EXPECT_FALSE(MustGet(store, "full").finish_time.has_value());
  expect_info(TaskState::kScheduled, 0, dead.last_error, "retried");
  FireNow(store, timers);
  LeasedTask third = store.Lease("q", 1, absl::Seconds(5)).at(0);
  EXPECT_EQ(third.payload, "payload bytes");
  EXPECT_EQ(third.headers, full.headers);

  // Acked: the payload and headers are dropped, size and fingerprint remain (repeats still
  // answered, another payload still refused).
  ASSERT_TRUE(store.Ack("full", third.lease_token).ok());
  EXPECT_EQ(MustGet(store, "full").finish_time, clock_.Now());
  expect_info(TaskState::kSucceeded, 1, dead.last_error, "succeeded");
  for (const LogRecord& record : log.records) {
    if (record.has_put() && record.put().task_id() == "full") {
      EXPECT_EQ(record.put().payload_fingerprint(), log.records[0].put().payload_fingerprint());
    }
  }
}

// A push task's target lives in the cold part: it survives claims, a release and the payload
// being dropped when it succeeds, and is part of the idempotency fingerprint throughout.
TEST_F(TaskStoreCompactTest, PushTargetSurvivesEveryTransition) {
  NewTask task = Task("push", "body", absl::ZeroDuration());
  PushTarget target;
  target.kind = PushTarget::Kind::kHttp;
  target.url = "http://example.test/hook";
  target.http_headers = {{"Authorization", "Bearer x"}};
  target.dispatch_deadline = absl::Seconds(4);
  task.target = target;
  const NewTask repeat = task;
  MustSchedule(store_, task);
  NewTask other_target = repeat;
  other_target.target->url = "http://example.test/other";
  auto check = [&](TaskState state, absl::string_view when) {
    TaskInfo info = MustGet(store_, "push");
    EXPECT_EQ(info.state, state) << when;
    EXPECT_EQ(Describe(info.target), Describe(repeat.target)) << when;
    EXPECT_TRUE(store_.Schedule(repeat).ok()) << when;
    EXPECT_EQ(store_.Schedule(other_target).status().code(), absl::StatusCode::kAlreadyExists)
        << when;
    ExpectSnapshotRoundTrip(store_, {"push"});
  };
  check(TaskState::kScheduled, "scheduled");
  std::vector<TimerOutcome> fired = FireNow();
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_TRUE(fired[0].push);
  EXPECT_TRUE(store_.Lease("q", 10, absl::Seconds(1)).empty()) << "push tasks are not leased";
  std::optional<PushTask> claim = store_.ClaimPush("q");
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->payload, "body");
  EXPECT_EQ(claim->target, *repeat.target);
  EXPECT_EQ(MustGet(store_, "push").lease_expire_time,
            clock_.Now() + absl::Seconds(4) + TaskStore::kPushLeaseSlack);
  check(TaskState::kLeased, "claimed");
  ASSERT_TRUE(
      store_.FinishPush("push", claim->lease_token, {.kind = PushOutcome::Kind::kReleased}).ok());
  EXPECT_EQ(MustGet(store_, "push").attempts, 0);
  check(TaskState::kScheduled, "released");
  FireNow();
  claim = store_.ClaimPush("q");
  ASSERT_TRUE(claim.has_value());
  ASSERT_TRUE(
      store_.FinishPush("push", claim->lease_token, {.kind = PushOutcome::Kind::kSucceeded}).ok());
  EXPECT_EQ(MustGet(store_, "push").payload_size_bytes, 4);
  check(TaskState::kSucceeded, "succeeded");
}

// Ids and payloads at their extremes are stored and handed out byte for byte: an empty payload, a
// 1 MiB payload of every byte value, an id of kMaxTaskIdBytes bytes; one byte more is refused.
TEST_F(TaskStoreCompactTest, LargeAndEmptyIdsAndPayloads) {
  std::string big_payload(1 << 20, '\0');
  for (size_t i = 0; i < big_payload.size(); ++i) big_payload[i] = static_cast<char>(i * 7);
  const std::string long_id(TaskStore::kMaxTaskIdBytes, 'L');
  const std::string binary_id("a\0b\xc3\xa9", 5);  // NUL and UTF-8
  MustSchedule(store_, Task("empty", "", absl::ZeroDuration()));
  MustSchedule(store_, Task("big", big_payload, absl::ZeroDuration()));
  MustSchedule(store_, Task(long_id, "x", absl::ZeroDuration()));
  MustSchedule(store_, Task(binary_id, std::string("\0\0", 2), absl::ZeroDuration()));
  EXPECT_EQ(store_.Schedule(Task(long_id + "L", "x", absl::ZeroDuration())).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MustGet(store_, "big").payload_size_bytes, 1 << 20);
  EXPECT_EQ(MustGet(store_, "empty").payload_size_bytes, 0);
  EXPECT_EQ(MustGet(store_, long_id).task_id, long_id);
  ExpectSnapshotRoundTrip(store_, {"empty", "big", long_id, binary_id});

  FireNow();
  std::map<std::string, LeasedTask> leased;
  for (LeasedTask& t : store_.Lease("q", 10, absl::Seconds(30))) leased[t.task_id] = std::move(t);
  ASSERT_EQ(leased.size(), 4u);
  EXPECT_EQ(leased["empty"].payload, "");
  EXPECT_EQ(leased["big"].payload, big_payload);
  EXPECT_EQ(leased[long_id].payload, "x");
  EXPECT_EQ(leased[binary_id].payload, std::string("\0\0", 2));

  // Succeeded (payloads dropped): sizes and idempotency remain, for the empty payload too.
  for (const auto& [id, t] : leased) ASSERT_TRUE(store_.Ack(id, t.lease_token).ok()) << id;
  EXPECT_EQ(MustGet(store_, "big").payload_size_bytes, 1 << 20);
  EXPECT_FALSE(store_.Schedule(Task("big", big_payload, absl::ZeroDuration()))->created);
  EXPECT_FALSE(store_.Schedule(Task("empty", "", absl::ZeroDuration()))->created);
  EXPECT_EQ(store_.Schedule(Task("empty", "x", absl::ZeroDuration())).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(
      store_.Schedule(Task(binary_id, std::string("\0\0", 2), absl::ZeroDuration()))->created);
  ExpectSnapshotRoundTrip(store_, {"empty", "big", long_id, binary_id});
}

// Replay keeps a put's payload size and fingerprint exactly as logged, even when they are not the
// payload's own (a log of another version), and ignores lease and finish times in states that
// have none (older versions logged stale ones): no cold part for them.
TEST_F(TaskStoreCompactTest, ReplayKeepsLoggedSizeAndFingerprint) {
  LogRecord put;
  put.mutable_put()->set_task_id("odd");
  put.mutable_put()->set_queue("q");
  put.mutable_put()->set_payload("abc");
  put.mutable_put()->set_payload_fingerprint(42);
  put.mutable_put()->set_payload_size_bytes(7);
  put.mutable_put()->set_create_time_unix_nanos(absl::ToUnixNanos(kStart));
  put.mutable_put()->set_first_due_time_unix_nanos(absl::ToUnixNanos(kStart + absl::Hours(1)));
  put.mutable_put()->set_max_attempts(5);
  put.mutable_put()->set_min_backoff_nanos(absl::ToInt64Nanoseconds(absl::Seconds(1)));
  put.mutable_put()->set_max_backoff_nanos(absl::ToInt64Nanoseconds(absl::Seconds(300)));
  store::v1::TaskUpdate* state = put.mutable_put()->mutable_state();
  state->set_task_id("odd");
  state->set_state(static_cast<int>(TaskState::kScheduled));
  state->set_due_time_unix_nanos(absl::ToUnixNanos(kStart + absl::Hours(1)));
  state->set_lease_expire_time_unix_nanos(absl::ToUnixNanos(kStart + absl::Minutes(3)));
  state->set_finish_time_unix_nanos(absl::ToUnixNanos(kStart + absl::Minutes(4)));
  ASSERT_TRUE(store_.Replay(put).ok());
  LogRecord plain = put;
  plain.mutable_put()->set_task_id("plain");
  plain.mutable_put()->mutable_state()->set_task_id("plain");
  plain.mutable_put()->set_payload_size_bytes(3);
  ASSERT_TRUE(store_.Replay(plain).ok());  // fingerprint 42 is not "abc"'s either
  store_.FinishRecovery();

  EXPECT_EQ(MustGet(store_, "odd").payload_size_bytes, 7);
  EXPECT_EQ(MustGet(store_, "plain").payload_size_bytes, 3);
  EXPECT_FALSE(MustGet(store_, "odd").finish_time.has_value());
  EXPECT_EQ(store_.ColdPartsForTest(), 1u) << "odd's size is not its payload's";
  std::vector<LogRecord> snapshot;
  size_t cursor = 0;
  while (store_.SnapshotChunk(&cursor, 10, &snapshot)) {
  }
  ASSERT_EQ(snapshot.size(), 2u);
  for (const LogRecord& record : snapshot) {
    EXPECT_EQ(record.put().payload_fingerprint(), 42u);
    EXPECT_EQ(record.put().payload(), "abc");
    EXPECT_EQ(record.put().state().lease_expire_time_unix_nanos(), 0);
    EXPECT_EQ(record.put().state().finish_time_unix_nanos(), 0);
  }
  // The logged fingerprint decides idempotency, as it did before the restart.
  NewTask same = Task("odd", "abc", absl::Hours(1));
  EXPECT_EQ(store_.Schedule(same).status().code(), absl::StatusCode::kAlreadyExists);

  // A put whose fingerprint and size are the payload's own needs no cold part.
  FakeTimers timers;
  TaskStore fresh(clock_, timers, {.retention = kRetention});
  MustSchedule(fresh, Task("own", "abc", absl::Hours(1)));
  std::vector<LogRecord> own;
  cursor = 0;
  while (fresh.SnapshotChunk(&cursor, 10, &own)) {
  }
  FakeTimers timers2;
  TaskStore replayed(clock_, timers2, {.retention = kRetention});
  ASSERT_TRUE(replayed.Replay(own.at(0)).ok());
  replayed.FinishRecovery();
  EXPECT_EQ(replayed.ColdPartsForTest(), 0u);
  // A repeat of a recovered task: its put is durable, so the repeat waits for no record (the
  // fingerprint is kept where the put's LSN is kept for a task scheduled since the start).
  uint64_t lsn = 77;
  EXPECT_FALSE(replayed.Schedule(Task("own", "abc", absl::Hours(1)), &lsn)->created);
  EXPECT_EQ(lsn, 77u);
  EXPECT_EQ(replayed.Schedule(Task("own", "abd", absl::Hours(1))).status().code(),
            absl::StatusCode::kAlreadyExists);
}

// The id index holds slot numbers, and slots are reused: through many schedules, forgets and
// reuses (and the index's growth), every id finds its own task and List visits each once.
TEST_F(TaskStoreCompactTest, IndexFollowsReusedSlots) {
  std::mt19937_64 rng(7);
  std::map<std::string, TaskState> model;
  int next = 0;
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 3000; ++i) {
      const std::string id = absl::StrCat("id-", next++, "-", rng() % 1000);
      MustSchedule(store_, Task(id, absl::StrCat("payload ", id), absl::Seconds(60)));
      model[id] = TaskState::kScheduled;
    }
    // Cancel about half of what is pending; forget what was cancelled a retention ago.
    for (auto& [id, state] : model) {
      if (state == TaskState::kScheduled && rng() % 2 == 0) {
        ASSERT_TRUE(store_.Cancel(id).ok()) << id;
        state = TaskState::kCancelled;
      }
    }
    clock_.Advance(kRetention / 2 + absl::Seconds(1));
    for (const TimerOutcome& outcome : FireNow()) {
      if (outcome.kind == TimerOutcome::Kind::kForgotten) model.erase(outcome.task_id);
      if (outcome.kind == TimerOutcome::Kind::kReady) model[outcome.task_id] = TaskState::kReady;
    }
  }
  EXPECT_EQ(store_.size(), model.size());
  for (const auto& [id, state] : model) {
    absl::StatusOr<TaskInfo> info = store_.Get(id);
    ASSERT_TRUE(info.ok()) << id;
    EXPECT_EQ(info->task_id, id);
    EXPECT_EQ(info->state, state) << id;
  }
  std::set<std::string> listed;
  uint64_t cursor = 0;
  do {
    TaskPage page = store_.List("", std::nullopt, 500, cursor);
    for (const TaskInfo& info : page.tasks) EXPECT_TRUE(listed.insert(info.task_id).second);
    cursor = page.next_cursor;
  } while (cursor != 0);
  EXPECT_EQ(listed.size(), model.size());
  EXPECT_EQ(store_.Get("id-0-x").status().code(), absl::StatusCode::kNotFound);
}

// The id index grows as absl grows a table, doubling when it is 7/8 full, and never further:
// at every size it is at most twice the smallest table that holds its tasks (a larger one costs
// 5 bytes an entry for nothing; an off-by-one once made it 4 times at 10^6 tasks).
TEST_F(TaskStoreCompactTest, IndexGrowsByDoubling) {
  const auto holds = [](size_t capacity) { return capacity - capacity / 8; };
  for (int i = 1; i <= 60000; ++i) {
    MustSchedule(store_, Task(absl::StrCat("t", i), "", absl::Hours(1)));
    const size_t capacity = store_.IndexCapacityForTest();
    ASSERT_LE(static_cast<size_t>(i), holds(capacity)) << i;
    if (capacity >= 15) {
      ASSERT_GT(static_cast<size_t>(i), holds(capacity / 2))
          << i << " tasks, capacity " << capacity;
    }
  }
  EXPECT_EQ(store_.IndexCapacityForTest(), 131071u);
}

}  // namespace
}  // namespace hourglass

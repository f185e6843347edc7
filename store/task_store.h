// TaskStore: the one owner of task state and of its transitions.
//
//   TaskStore store(clock, timers, {.retention = absl::Hours(24)});
//   absl::StatusOr<ScheduleResult> r = store.Schedule({.queue = "emails", .payload = "...",
//                                                      .due_time = clock.Now() +
//                                                      absl::Seconds(90)});
//   ...                                  // the tick thread fires the task's timer:
//   TimerOutcome o = store.OnTimer(cookie);                   // SCHEDULED -> READY
//   std::vector<LeasedTask> leased = store.Lease("emails", 10, absl::Seconds(30));
//   store.Ack(leased[0].task_id, leased[0].lease_token);      // LEASED -> SUCCEEDED
//
// The life cycle (DESIGN.md §4):
//
//   SCHEDULED --due--> READY --Lease--> LEASED --Ack--> SUCCEEDED
//       ^                |                 |
//       |                +--Cancel--> CANCELLED
//       +--- Nack / lease expiry (backoff) -+--(max_attempts reached)--> DEAD
//
// Every task has exactly one timer (TimerEntry embedded in its record), armed for the event its
// state waits for: the due time (SCHEDULED), the lease's end (LEASED) or the end of retention
// (SUCCEEDED, CANCELLED, DEAD); READY tasks wait in their queue's ready list instead. The store
// arms timers through the Timers interface and learns of fired ones through OnTimer(cookie); a
// cookie names the record and the arming generation, so a timer that fired just as it was re-armed
// or cancelled is recognised as stale and ignored.
//
// Every state change is made by one of the public mutators below under mu_, in O(1) (Lease: O(n)
// in the tasks it hands out), and is one LogRecord appended to the TaskLog, if the store has one.
// A mutator's `lsn` out-parameter (when not null) receives the sequence number of its last record;
// it is left untouched when the call made no change, except that an idempotent repeat of Schedule
// gets the original's record, so that it is answered no sooner than the original. The caller
// answers its client once the log says that LSN is durable. The
// one change that is not logged is SCHEDULED -> READY, which recovery derives from the due time.
// Recovery replays records with Replay() and then calls FinishRecovery(), which arms every timer.
//
// Memory: a task is one allocation (a fixed part of 96 bytes, its id and its payload; see
// Record in task_store.cc), a 4-byte entry in the id index and an 8-byte slot. What only some
// tasks need (headers, a push target, a non-default retry policy, a lease, an error, a finish
// time) lives in a "cold" part, allocated only while the task has one of them. Times are kept as
// Unix nanoseconds, as the log keeps them.
//
// Thread-safe. Lock order: mu_ before the Timers implementation's lock. Never calls out to user
// code while holding mu_.
#ifndef HOURGLASS_STORE_TASK_STORE_H_
#define HOURGLASS_STORE_TASK_STORE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/task_log.h"
#include "wheel/clock.h"
#include "wheel/timers.h"
#include "wheel/timing_wheel.h"

namespace hourglass {

// Numbered as hourglass.v1.TaskState.
enum class TaskState : int {
  kScheduled = 1,
  kReady = 2,
  kLeased = 3,
  kSucceeded = 4,
  kCancelled = 5,
  kDead = 6,
};
inline constexpr int kTaskStateCount = 7;          // index 0 unused
absl::string_view TaskStateName(TaskState state);  // "SCHEDULED", ...
inline bool IsFinal(TaskState s) {
  return s == TaskState::kSucceeded || s == TaskState::kCancelled || s == TaskState::kDead;
}

// How failed hand-outs are retried. After the n-th failed hand-out the task waits
// min(min_backoff * 2^(n-1), max_backoff); after max_attempts hand-outs it is DEAD.
struct RetryPolicy {
  int32_t max_attempts = 5;
  absl::Duration min_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(300);

  // The wait after the `failed_attempts`-th failure (>= 1).
  absl::Duration Backoff(int32_t failed_attempts) const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// Where a push task is delivered when it is due (hourglass.v1.HttpTarget / GrpcTarget). Tasks
// without one are pull tasks, handed out by Lease.
struct PushTarget {
  enum class Kind { kHttp = 1, kGrpc = 2 };
  Kind kind = Kind::kHttp;
  std::string url;       // kHttp: POSTed to
  Headers http_headers;  // kHttp: sent with the request
  std::string address;   // kGrpc: host:port
  std::string method;    // kGrpc: "/package.Service/Method"
  bool tls = false;      // kGrpc: TLS instead of plaintext
  // How long one delivery attempt may take.
  absl::Duration dispatch_deadline = absl::Seconds(30);

  friend bool operator==(const PushTarget&, const PushTarget&) = default;
};

// A validated Schedule request.
struct NewTask {
  std::string queue;
  std::string task_id;  // empty: the store makes a time-ordered id
  std::string payload;
  Headers headers;
  absl::Time due_time;
  RetryPolicy retry_policy;
  std::optional<PushTarget> target = std::nullopt;  // none: a pull task
};

struct ScheduleResult {
  std::string task_id;
  absl::Time due_time;
  bool created = false;  // false: an idempotent repeat of an earlier Schedule
};

// A copy of what the store knows of a task (without its payload).
struct TaskInfo {
  std::string task_id;
  std::string queue;
  TaskState state = TaskState::kScheduled;
  int32_t attempts = 0;
  absl::Time due_time;
  absl::Time create_time;
  std::optional<absl::Time> lease_expire_time;  // LEASED only
  std::optional<absl::Time> finish_time;        // final states only
  std::string last_error;
  RetryPolicy retry_policy;
  int64_t payload_size_bytes = 0;
  std::optional<PushTarget> target;  // push tasks only
};

// A task handed to a consumer.
struct LeasedTask {
  std::string task_id;
  std::string queue;
  std::string payload;
  Headers headers;
  int32_t attempt = 0;  // from 1
  absl::Time due_time;
  std::string lease_token;
  absl::Time lease_expire_time;
};

// A push task claimed for one delivery attempt (ClaimPush): LEASED to the server itself until
// FinishPush reports the outcome, or until the dispatch deadline plus kPushLeaseSlack has passed
// (the server died during the delivery), when it is retried like an expired lease.
struct PushTask {
  std::string task_id;
  std::string queue;
  std::string payload;
  Headers headers;
  int32_t attempt = 0;  // from 1
  absl::Time due_time;
  std::string lease_token;
  PushTarget target;
};

// How a push delivery claimed with ClaimPush ended.
struct PushOutcome {
  enum class Kind {
    kSucceeded,  // -> SUCCEEDED
    kRetry,      // -> SCHEDULED after max(backoff, retry_after), or DEAD after max_attempts
    kDead,       // a permanent failure: -> DEAD at once
    kReleased,   // not attempted after all (shutdown): -> SCHEDULED, due now, attempt not counted
  };
  Kind kind = Kind::kSucceeded;
  std::string error = "";                             // kRetry, kDead: becomes last_error
  absl::Duration retry_after = absl::ZeroDuration();  // kRetry: the receiver's Retry-After
};

// One page of ListTasks.
struct TaskPage {
  std::vector<TaskInfo> tasks;
  // Where the next page starts; 0 when the listing is complete.
  uint64_t next_cursor = 0;
};

// What a fired timer did, for the caller to report (metrics) and act on (wake consumers).
struct TimerOutcome {
  enum class Kind {
    kStale,       // the timer was re-armed or cancelled as it fired: nothing happened
    kReady,       // SCHEDULED -> READY: consumers of `queue` may lease it
    kLeaseRetry,  // a lease expired; the task waits for its retry (SCHEDULED)
    kLeaseDead,   // a lease expired on the last attempt: DEAD
    kForgotten,   // a finished task's retention ended; it is gone
  };
  Kind kind = Kind::kStale;
  std::string queue;
  std::string task_id;
  absl::Duration lateness;  // kReady: now - due_time (>= 0)
  bool push = false;        // kReady: a push task, to be claimed with ClaimPush (not leased)
};

// Per-queue counts of tasks by state, for the gauges.
struct QueueCounts {
  std::string queue;
  std::array<int64_t, kTaskStateCount> by_state{};  // indexed by TaskState
};

class TaskStore {
 public:
  struct Options {
    // How long finished tasks (SUCCEEDED, CANCELLED, DEAD) are kept for GetStatus and idempotency.
    absl::Duration retention = absl::Hours(24);
    // Most unfinished tasks (SCHEDULED, READY or LEASED, across all queues) the store holds;
    // Schedule refuses new tasks beyond it. 0: no limit. Recovery and Retry are not limited:
    // what was acknowledged is never dropped, and an operator's retry is deliberate.
    int64_t max_pending = 0;
  };

  // `clock`, `timers` and `log` (which may be null: no log) must outlive the store. Timers' fired
  // cookies are to be passed to OnTimer() (cookies with kExternalCookieBit set are not the
  // store's).
  TaskStore(Clock& clock, Timers& timers, Options options, TaskLog* log = nullptr);
  ~TaskStore();  // disarms every timer
  TaskStore(const TaskStore&) = delete;
  TaskStore& operator=(const TaskStore&) = delete;

  // Cookies with this bit set belong to other users of the same Timers (Lease long-polls).
  static constexpr uint64_t kExternalCookieBit = uint64_t{1} << 63;

  // The largest task id and payload the store holds (the service's limits are far below them).
  static constexpr size_t kMaxTaskIdBytes = 0xFFFF;
  static constexpr size_t kMaxPayloadBytes = 0xFFFFFFFF;

  // Adds a SCHEDULED task (due at once when due_time has passed). With a task_id already in use:
  // the same queue and payload return the original result (created = false); anything else is
  // ALREADY_EXISTS. A new task beyond Options::max_pending is RESOURCE_EXHAUSTED (the only
  // RESOURCE_EXHAUSTED it returns); an idempotent repeat is answered as usual even then. A task_id
  // or payload beyond kMaxTaskIdBytes / kMaxPayloadBytes is INVALID_ARGUMENT.
  absl::StatusOr<ScheduleResult> Schedule(NewTask task, uint64_t* lsn = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // SCHEDULED or READY -> CANCELLED. NOT_FOUND, or FAILED_PRECONDITION for other states.
  absl::StatusOr<TaskInfo> Cancel(absl::string_view task_id, uint64_t* lsn = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Moves a SCHEDULED or READY task to `due_time` (SCHEDULED). NOT_FOUND, FAILED_PRECONDITION.
  absl::StatusOr<TaskInfo> Reschedule(absl::string_view task_id, absl::Time due_time,
                                      uint64_t* lsn = nullptr) ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<TaskInfo> Get(absl::string_view task_id) const ABSL_LOCKS_EXCLUDED(mu_);

  // READY -> LEASED for up to `max_tasks` tasks of `queue`, oldest due first. Empty when none is
  // ready.
  std::vector<LeasedTask> Lease(absl::string_view queue, int max_tasks,
                                absl::Duration lease_duration, uint64_t* lsn = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // LEASED -> SUCCEEDED. NOT_FOUND; FAILED_PRECONDITION when not leased under `lease_token`.
  absl::StatusOr<TaskInfo> Ack(absl::string_view task_id, absl::string_view lease_token,
                               uint64_t* lsn = nullptr) ABSL_LOCKS_EXCLUDED(mu_);

  // LEASED -> SCHEDULED after `retry_delay` (or the backoff), or DEAD after max_attempts.
  absl::StatusOr<TaskInfo> Nack(absl::string_view task_id, absl::string_view lease_token,
                                std::optional<absl::Duration> retry_delay, std::string error,
                                uint64_t* lsn = nullptr) ABSL_LOCKS_EXCLUDED(mu_);

  // Extends a lease to `lease_duration` from now; returns the new expiry.
  absl::StatusOr<absl::Time> ExtendLease(absl::string_view task_id, absl::string_view lease_token,
                                         absl::Duration lease_duration, uint64_t* lsn = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Push delivery. READY push tasks wait in their queue's push list, apart from the pull tasks
  // that Lease hands out. ClaimPush takes the oldest (READY -> LEASED, attempts + 1); empty when
  // none is ready.
  std::optional<PushTask> ClaimPush(absl::string_view queue, uint64_t* lsn = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Reports how a claimed delivery ended. NOT_FOUND; FAILED_PRECONDITION when the claim is no
  // longer current (its lease ran out and the task was claimed again).
  absl::StatusOr<TaskInfo> FinishPush(absl::string_view task_id, absl::string_view lease_token,
                                      const PushOutcome& outcome, uint64_t* lsn = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A claimed push task's lease lasts its dispatch deadline plus this.
  static constexpr absl::Duration kPushLeaseSlack = absl::Seconds(10);
  // The longest Retry-After of a receiver that FinishPush honours.
  static constexpr absl::Duration kMaxRetryAfter = absl::Hours(24);

  // DEAD -> SCHEDULED, due now, with attempts back at 0 (a fresh set of max_attempts).
  // NOT_FOUND; FAILED_PRECONDITION when the task is not DEAD.
  absl::StatusOr<TaskInfo> Retry(absl::string_view task_id, uint64_t* lsn = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Lists the tasks of `queue` (empty: every queue) in `state` (none: every state), up to
  // `page_size` of them, starting at `cursor` (0 for the first page). Tasks come in no particular
  // order; a task that exists for the whole listing is listed exactly once. Holds mu_ for a bounded
  // stretch at a time, so a listing over millions of tasks does not stall writers.
  TaskPage List(absl::string_view queue, std::optional<TaskState> state, size_t page_size,
                uint64_t cursor) const ABSL_LOCKS_EXCLUDED(mu_);

  // Applies a fired timer (see TimerOutcome).
  TimerOutcome OnTimer(uint64_t cookie) ABSL_LOCKS_EXCLUDED(mu_);

  // Recovery, before the store is used: applies one record of a snapshot or the log. Records are
  // absolute, so one older than the task's state (a fuzzy snapshot) is harmless; an update or
  // forget of an unknown task is skipped. InvalidArgument for a record that makes no sense.
  absl::Status Replay(const store::v1::LogRecord& record) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends recovery: arms every task's timer for its state. Overdue tasks fire at once, oldest
  // first; leases that ran out while the server was down expire at once.
  void FinishRecovery() ABSL_LOCKS_EXCLUDED(mu_);

  // Snapshots: appends a TaskPut record for up to `max_tasks` tasks, starting at `*cursor` (0 to
  // begin), and advances the cursor; returns false once every task has been visited. Holds mu_
  // for one chunk only, so writers wait for one chunk, not the whole snapshot.
  bool SnapshotChunk(size_t* cursor, size_t max_tasks, std::vector<store::v1::LogRecord>* out)
      ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<QueueCounts> Counts() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // Unfinished tasks (SCHEDULED, READY, LEASED) across all queues, exactly; O(1).
  int64_t pending() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t max_pending() const { return options_.max_pending; }

  // How many tasks have a cold part (see Memory above), for tests of when it exists.
  size_t ColdPartsForTest() const ABSL_LOCKS_EXCLUDED(mu_);
  // The id index's capacity (entries it has room for, at any load), for tests of its growth.
  size_t IndexCapacityForTest() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Queue;
  struct Record;
  struct Cold;
  // The id index holds slot numbers; these hash and compare them by the id of the record in the
  // slot, and look ids up directly (heterogeneous lookup), so that an entry is 4 bytes.
  struct IdHash {
    using is_transparent = void;
    size_t operator()(absl::string_view task_id) const;
    size_t operator()(uint32_t slot) const;
    const std::vector<Record*>* slots;
  };
  struct IdEq {
    using is_transparent = void;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(uint32_t slot, absl::string_view task_id) const;
    bool operator()(absl::string_view task_id, uint32_t slot) const {
      return (*this)(slot, task_id);
    }
    const std::vector<Record*>* slots;
  };

  Record* FindLocked(absl::string_view task_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The SCHEDULED or READY task `task_id`; NOT_FOUND, or FAILED_PRECONDITION saying it cannot be
  // `verb` ("cancelled") in its state.
  absl::StatusOr<Record*> FindPendingLocked(absl::string_view task_id, absl::string_view verb) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Record*> FindLeasedLocked(absl::string_view task_id,
                                           absl::string_view lease_token) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Queue* QueueLocked(absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Queue& QueueOf(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The record's cold part: ColdLocked creates it when missing, FindColdLocked does not (null).
  Cold& ColdLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const Cold* FindColdLocked(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees the cold part once it holds nothing but defaults.
  void MaybeDropColdLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the cold part (or its absence) says.
  absl::Time FirstDueTimeLocked(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t FingerprintLocked(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t PayloadSizeLocked(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const RetryPolicy& RetryPolicyLocked(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets the due time, keeping the first one (the answer to an idempotent repeat) in the cold part
  // once they differ.
  void SetDueLocked(Record* r, absl::Time due_time) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetLeaseLocked(Record* r, std::string lease_token, absl::Time expire_time)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearLeaseLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetLastErrorLocked(Record* r, std::string error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces `r` by a copy without its payload (and headers), keeping the payload's size and
  // fingerprint; returns the copy, which takes `r`'s slot. `r` must not be armed or READY.
  Record* DropPayloadLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStateLocked(Record* r, TaskState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Arms the task's one timer for what its state waits for (or disarms it: READY).
  void ArmForStateLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmLocked(Record* r, absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DisarmLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A change of `r` is complete: arms its timer for its new state and logs it. Returns the LSN.
  uint64_t ChangedLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t LogLocked(const store::v1::LogRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateToProtoLocked(const Record& r, store::v1::TaskUpdate* update) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutToProtoLocked(const Record& r, store::v1::TaskPut* put) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new SCHEDULED record in a free slot, indexed by its id (which must not be in use).
  Record* NewRecordLocked(absl::string_view queue, absl::string_view task_id,
                          absl::string_view payload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns `r`, or the record that replaced it (DropPayloadLocked).
  Record* ApplyUpdateLocked(Record* r, const store::v1::TaskUpdate& update)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushReadyLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnlinkReadyLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // LEASED -> SCHEDULED for a retry at now + delay, or DEAD when attempts are used up. Returns `r`
  // or the record that replaced it.
  Record* FailAttemptLocked(Record* r, absl::Time now, std::optional<absl::Duration> retry_delay,
                            std::string error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns `r`, or the record that replaced it when the final state drops the payload.
  Record* FinishLocked(Record* r, TaskState final_state, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(Record* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  TaskInfo InfoLocked(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewTaskIdLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewLeaseTokenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Clock& clock_;
  Timers& timers_;
  const Options options_;
  TaskLog* const log_;  // may be null

  mutable absl::Mutex mu_;
  // Records by slot (owned; null: free); a cookie is (slot << 32 | timer generation), and the
  // ready lists link slots. Freed slots are reused.
  std::vector<Record*> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(mu_);
  // The slots of every record, by task id.
  using IdIndex = absl::flat_hash_set<uint32_t, IdHash, IdEq>;
  IdIndex by_id_ ABSL_GUARDED_BY(mu_);
  // The cold parts, by slot: what a task needs only in some states or with non-default options.
  absl::node_hash_map<uint32_t, Cold> cold_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Queue>> queues_ ABSL_GUARDED_BY(mu_);
  std::vector<Queue*> queue_list_ ABSL_GUARDED_BY(mu_);  // by Queue::index
  Queue* last_queue_ ABSL_GUARDED_BY(mu_) = nullptr;     // of the last QueueLocked
  uint32_t next_timer_generation_ ABSL_GUARDED_BY(mu_) = 1;
  // Replay's view of the clock, and how many records it has replayed since it read it.
  absl::Time replay_now_ ABSL_GUARDED_BY(mu_);
  uint32_t replays_since_clock_read_ ABSL_GUARDED_BY(mu_) = 0;
  // Records in a non-final state: kept by NewRecordLocked, SetStateLocked and EraseLocked.
  int64_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hourglass

#endif  // HOURGLASS_STORE_TASK_STORE_H_

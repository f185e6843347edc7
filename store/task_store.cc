#include "store/task_store.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace hourglass {

namespace {

// FNV-1a, 64 bits: a stable fingerprint of a payload for idempotent Schedule, so that finished
// tasks can drop their payload and still recognise a repeat.
uint64_t Fingerprint(absl::string_view bytes, uint64_t h = 14695981039346656037ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// The payload's fingerprint, folded with the push target's, so that an idempotent repeat must
// name the same target too. A pull task's is the payload's alone.
uint64_t TaskFingerprint(absl::string_view payload, const PushTarget* target) {
  uint64_t h = Fingerprint(payload);
  if (target == nullptr) return h;
  h = Fingerprint(
      absl::StrCat("\x01", static_cast<int>(target->kind), "\x01", target->url, "\x01",
                   target->address, "\x01", target->method, "\x01", target->tls ? "tls" : "",
                   "\x01", absl::ToInt64Nanoseconds(target->dispatch_deadline)),
      h);
  for (const auto& [key, value] : target->http_headers) {
    h = Fingerprint(absl::StrCat("\x02", key, "\x03", value), h);
  }
  return h;
}

void TargetToProto(const PushTarget& target, store::v1::PushTarget* out) {
  out->set_kind(static_cast<int32_t>(target.kind));
  out->set_url(target.url);
  for (const auto& [key, value] : target.http_headers) {
    store::v1::Header* header = out->add_http_headers();
    header->set_key(key);
    header->set_value(value);
  }
  out->set_address(target.address);
  out->set_method(target.method);
  out->set_tls(target.tls);
  out->set_dispatch_deadline_nanos(absl::ToInt64Nanoseconds(target.dispatch_deadline));
}

PushTarget TargetFromProto(const store::v1::PushTarget& proto) {
  PushTarget target;
  target.kind = static_cast<PushTarget::Kind>(proto.kind());
  target.url = proto.url();
  for (const store::v1::Header& header : proto.http_headers()) {
    target.http_headers.emplace_back(header.key(), header.value());
  }
  target.address = proto.address();
  target.method = proto.method();
  target.tls = proto.tls();
  target.dispatch_deadline = absl::Nanoseconds(proto.dispatch_deadline_nanos());
  return target;
}

// SUCCEEDED and CANCELLED tasks are never handed out again, so they drop their payload; DEAD
// ones keep it for RetryTask.
bool KeepsPayload(TaskState state) { return !IsFinal(state) || state == TaskState::kDead; }

constexpr uint32_t kNoSlot = ~uint32_t{0};

void SetLsn(uint64_t* out, uint64_t lsn) {
  if (out != nullptr) *out = lsn;
}

absl::Status NotFound(absl::string_view task_id) {
  return absl::NotFoundError(absl::StrCat("no task with task_id \"", task_id, "\""));
}

}  // namespace

absl::string_view TaskStateName(TaskState state) {
  switch (state) {
    case TaskState::kScheduled:
      return "SCHEDULED";
    case TaskState::kReady:
      return "READY";
    case TaskState::kLeased:
      return "LEASED";
    case TaskState::kSucceeded:
      return "SUCCEEDED";
    case TaskState::kCancelled:
      return "CANCELLED";
    case TaskState::kDead:
      return "DEAD";
  }
  return "UNSPECIFIED";
}

absl::Duration RetryPolicy::Backoff(int32_t failed_attempts) const {
  absl::Duration backoff = min_backoff;
  for (int32_t i = 1; i < failed_attempts && backoff < max_backoff; ++i) backoff *= 2;
  return std::min(backoff, max_backoff);
}

struct TaskStore::Queue {
  std::string name;
  // Intrusive FIFOs of READY records (Record::ready_prev/ready_next): pull tasks for Lease, push
  // tasks for ClaimPush.
  struct ReadyList {
    Record* head = nullptr;
    Record* tail = nullptr;
  };
  ReadyList pull;
  ReadyList push;
  std::array<int64_t, kTaskStateCount> counts{};
};

struct TaskStore::Record {
  TimerEntry timer;  // the one timer: due time, lease end or retention end
  uint32_t slot = kNoSlot;
  uint32_t timer_generation = 0;  // of the current arming; 0 when disarmed
  Record* ready_prev = nullptr;
  Record* ready_next = nullptr;
  bool in_ready_list = false;

  Queue* queue = nullptr;
  std::string task_id;
  std::string payload;                 // dropped when the task succeeds or is cancelled
  Headers headers;                     // dropped when the task succeeds or is cancelled
  std::unique_ptr<PushTarget> target;  // null: a pull task
  uint64_t payload_fingerprint = 0;
  int64_t payload_size_bytes = 0;
  TaskState state = TaskState::kScheduled;
  int32_t attempts = 0;
  absl::Time due_time;
  absl::Time first_due_time;  // as answered to Schedule: a repeat gets the same answer
  uint64_t put_lsn = 0;       // of the Schedule's record (0 after recovery: durable)
  absl::Time create_time;
  absl::Time lease_expire_time;
  absl::Time finish_time;
  std::string lease_token;
  std::string last_error;
  RetryPolicy retry_policy;
};

TaskStore::TaskStore(Clock& clock, Timers& timers, Options options, TaskLog* log)
    : clock_(clock), timers_(timers), options_(options), log_(log) {}

TaskStore::~TaskStore() {
  absl::MutexLock lock(&mu_);
  for (auto& record : slots_) {
    if (record != nullptr) timers_.Cancel(&record->timer);
  }
}

TaskStore::Record* TaskStore::FindLocked(absl::string_view task_id) const {
  auto it = by_id_.find(task_id);
  return it == by_id_.end() ? nullptr : it->second;
}

TaskStore::Queue* TaskStore::QueueLocked(absl::string_view name) {
  auto it = queues_.find(name);
  if (it != queues_.end()) return it->second.get();
  auto queue = std::make_unique<Queue>();
  queue->name = std::string(name);
  Queue* raw = queue.get();
  queues_.emplace(queue->name, std::move(queue));
  return raw;
}

void TaskStore::SetStateLocked(Record* r, TaskState state) {
  --r->queue->counts[static_cast<int>(r->state)];
  ++r->queue->counts[static_cast<int>(state)];
  pending_ += static_cast<int>(IsFinal(r->state)) - static_cast<int>(IsFinal(state));
  r->state = state;
}

void TaskStore::ArmLocked(Record* r, absl::Time when) {
  r->timer_generation = next_timer_generation_++;
  if (next_timer_generation_ == 0) next_timer_generation_ = 1;
  const uint64_t cookie = (uint64_t{r->slot} << 32) | r->timer_generation;
  absl::Status armed = timers_.Schedule(&r->timer, when, cookie);
  // Due times are validated against --max_delay, far inside the wheel's horizon; a failure here is
  // a broken invariant, not bad input.
  if (!armed.ok()) {
    std::fprintf(stderr, "hourglass: fatal: arming a timer failed: %s\n", armed.ToString().c_str());
    std::abort();
  }
}

void TaskStore::DisarmLocked(Record* r) {
  timers_.Cancel(&r->timer);
  r->timer_generation = 0;
}

void TaskStore::ArmForStateLocked(Record* r) {
  switch (r->state) {
    case TaskState::kScheduled:
      ArmLocked(r, r->due_time);
      break;
    case TaskState::kReady:
      DisarmLocked(r);  // it waits in its queue's ready list instead
      break;
    case TaskState::kLeased:
      ArmLocked(r, r->lease_expire_time);
      break;
    case TaskState::kSucceeded:
    case TaskState::kCancelled:
    case TaskState::kDead:
      ArmLocked(r, r->finish_time + options_.retention);
      break;
  }
}

uint64_t TaskStore::LogLocked(const store::v1::LogRecord& record) {
  return log_ == nullptr ? 0 : log_->Append(record);
}

uint64_t TaskStore::ChangedLocked(Record* r) {
  ArmForStateLocked(r);
  if (log_ == nullptr) return 0;
  store::v1::LogRecord record;
  UpdateToProtoLocked(*r, record.mutable_update());
  return LogLocked(record);
}

void TaskStore::UpdateToProtoLocked(const Record& r, store::v1::TaskUpdate* update) const {
  update->set_task_id(r.task_id);
  update->set_state(static_cast<int32_t>(r.state));
  update->set_attempts(r.attempts);
  update->set_due_time_unix_nanos(absl::ToUnixNanos(r.due_time));
  update->set_lease_token(r.lease_token);
  update->set_lease_expire_time_unix_nanos(absl::ToUnixNanos(r.lease_expire_time));
  update->set_last_error(r.last_error);
  update->set_finish_time_unix_nanos(absl::ToUnixNanos(r.finish_time));
}

void TaskStore::PutToProtoLocked(const Record& r, store::v1::TaskPut* put) const {
  put->set_task_id(r.task_id);
  put->set_queue(r.queue->name);
  put->set_payload(r.payload);
  for (const auto& [key, value] : r.headers) {
    store::v1::Header* header = put->add_headers();
    header->set_key(key);
    header->set_value(value);
  }
  put->set_payload_fingerprint(r.payload_fingerprint);
  put->set_payload_size_bytes(r.payload_size_bytes);
  put->set_create_time_unix_nanos(absl::ToUnixNanos(r.create_time));
  put->set_first_due_time_unix_nanos(absl::ToUnixNanos(r.first_due_time));
  put->set_max_attempts(r.retry_policy.max_attempts);
  put->set_min_backoff_nanos(absl::ToInt64Nanoseconds(r.retry_policy.min_backoff));
  put->set_max_backoff_nanos(absl::ToInt64Nanoseconds(r.retry_policy.max_backoff));
  UpdateToProtoLocked(r, put->mutable_state());
  if (r.target != nullptr) TargetToProto(*r.target, put->mutable_target());
}

TaskStore::Record* TaskStore::NewRecordLocked(absl::string_view queue, std::string task_id) {
  auto record = std::make_unique<Record>();
  Record* r = record.get();
  if (free_slots_.empty()) {
    r->slot = static_cast<uint32_t>(slots_.size());
    slots_.push_back(std::move(record));
  } else {
    r->slot = free_slots_.back();
    free_slots_.pop_back();
    slots_[r->slot] = std::move(record);
  }
  r->queue = QueueLocked(queue);
  r->task_id = std::move(task_id);
  r->state = TaskState::kScheduled;
  ++r->queue->counts[static_cast<int>(TaskState::kScheduled)];
  ++pending_;
  by_id_.emplace(r->task_id, r);
  return r;
}

void TaskStore::PushReadyLocked(Record* r) {
  // Ordered by due time (ties in arrival order), so that Lease hands out the oldest due first
  // even when workers make tasks of one tick READY in another order. Tasks nearly always become
  // READY in due order, so the walk from the tail stops at once.
  Queue::ReadyList& list = r->target != nullptr ? r->queue->push : r->queue->pull;
  Record* after = list.tail;
  while (after != nullptr && after->due_time > r->due_time) after = after->ready_prev;
  r->ready_prev = after;
  r->ready_next = after != nullptr ? after->ready_next : list.head;
  (r->ready_next != nullptr ? r->ready_next->ready_prev : list.tail) = r;
  (after != nullptr ? after->ready_next : list.head) = r;
  r->in_ready_list = true;
}

void TaskStore::UnlinkReadyLocked(Record* r) {
  if (!r->in_ready_list) return;
  Queue::ReadyList& list = r->target != nullptr ? r->queue->push : r->queue->pull;
  (r->ready_prev != nullptr ? r->ready_prev->ready_next : list.head) = r->ready_next;
  (r->ready_next != nullptr ? r->ready_next->ready_prev : list.tail) = r->ready_prev;
  r->ready_prev = r->ready_next = nullptr;
  r->in_ready_list = false;
}

TaskInfo TaskStore::InfoLocked(const Record& r) const {
  TaskInfo info;
  info.task_id = r.task_id;
  info.queue = r.queue->name;
  info.state = r.state;
  info.attempts = r.attempts;
  info.due_time = r.due_time;
  info.create_time = r.create_time;
  if (r.state == TaskState::kLeased) info.lease_expire_time = r.lease_expire_time;
  if (IsFinal(r.state)) info.finish_time = r.finish_time;
  info.last_error = r.last_error;
  info.retry_policy = r.retry_policy;
  info.payload_size_bytes = r.payload_size_bytes;
  if (r.target != nullptr) info.target = *r.target;
  return info;
}

std::string TaskStore::NewTaskIdLocked(absl::Time now) {
  // A ULID: 48 bits of Unix milliseconds, then 80 random bits, in Crockford's base32, so that ids
  // sort by creation time.
  static constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  const uint64_t ms = static_cast<uint64_t>(std::max<int64_t>(0, absl::ToUnixMillis(now)));
  const uint64_t hi = absl::Uniform<uint64_t>(bitgen_) & 0xFFFF;  // 16 random bits
  const uint64_t lo = absl::Uniform<uint64_t>(bitgen_);           // 64 random bits
  std::string id(26, '0');
  // 128 bits: ms (48) | hi (16) | lo (64); 26 base32 digits hold 130 bits, the top 2 are zero.
  unsigned __int128 v = (static_cast<unsigned __int128>((ms << 16) | hi) << 64) | lo;
  for (int i = 25; i >= 0; --i) {
    id[i] = kAlphabet[static_cast<int>(v & 31)];
    v >>= 5;
  }
  return id;
}

std::string TaskStore::NewLeaseTokenLocked() {
  return absl::StrCat(absl::Hex(absl::Uniform<uint64_t>(bitgen_), absl::kZeroPad16),
                      absl::Hex(absl::Uniform<uint64_t>(bitgen_), absl::kZeroPad16));
}

absl::StatusOr<ScheduleResult> TaskStore::Schedule(NewTask task, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  const uint64_t fingerprint =
      TaskFingerprint(task.payload, task.target.has_value() ? &*task.target : nullptr);
  if (!task.task_id.empty()) {
    if (const Record* existing = FindLocked(task.task_id); existing != nullptr) {
      if (existing->queue->name != task.queue || existing->payload_fingerprint != fingerprint) {
        return absl::AlreadyExistsError(
            absl::StrCat("task_id \"", task.task_id, "\" is already used by a task with ",
                         existing->queue->name != task.queue
                             ? absl::StrCat("queue \"", existing->queue->name, "\"")
                             : std::string("a different payload or push target"),
                         "; choose another task_id or repeat the original request"));
      }
      // Answered no sooner than the original: its put may not be durable yet.
      if (lsn != nullptr && existing->put_lsn > 0) *lsn = existing->put_lsn;
      return ScheduleResult{existing->task_id, existing->first_due_time, /*created=*/false};
    }
  }
  // Checked after the idempotency lookup: a repeat of an accepted task is answered even when full.
  if (options_.max_pending > 0 && pending_ >= options_.max_pending) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server is full: it holds ", pending_,
        " unfinished (scheduled, ready or leased) tasks, ",
        "its limit (--max_pending=", options_.max_pending,
        "); retry later, once consumers have finished tasks, or ask the operator to add "
        "consumers or raise --max_pending"));
  }
  if (task.task_id.empty()) {
    do {
      task.task_id = NewTaskIdLocked(now);
    } while (FindLocked(task.task_id) != nullptr);
  }

  Record* r = NewRecordLocked(task.queue, std::move(task.task_id));
  r->payload_fingerprint = fingerprint;
  r->payload_size_bytes = static_cast<int64_t>(task.payload.size());
  r->payload = std::move(task.payload);
  r->headers = std::move(task.headers);
  if (task.target.has_value()) r->target = std::make_unique<PushTarget>(std::move(*task.target));
  r->due_time = std::max(task.due_time, now);
  r->first_due_time = r->due_time;
  r->create_time = now;
  r->retry_policy = task.retry_policy;
  ArmForStateLocked(r);
  if (log_ != nullptr) {
    store::v1::LogRecord record;
    PutToProtoLocked(*r, record.mutable_put());
    r->put_lsn = LogLocked(record);
    if (lsn != nullptr) *lsn = r->put_lsn;
  }
  return ScheduleResult{r->task_id, r->due_time, /*created=*/true};
}

absl::StatusOr<TaskInfo> TaskStore::Cancel(absl::string_view task_id, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> found = FindPendingLocked(task_id, "cancelled");
  if (!found.ok()) return found.status();
  Record* r = *found;
  FinishLocked(r, TaskState::kCancelled, now);
  SetLsn(lsn, ChangedLocked(r));
  return InfoLocked(*r);
}

absl::StatusOr<TaskInfo> TaskStore::Reschedule(absl::string_view task_id, absl::Time due_time,
                                               uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> found = FindPendingLocked(task_id, "rescheduled");
  if (!found.ok()) return found.status();
  Record* r = *found;
  UnlinkReadyLocked(r);
  SetStateLocked(r, TaskState::kScheduled);
  r->due_time = std::max(due_time, now);
  SetLsn(lsn, ChangedLocked(r));
  return InfoLocked(*r);
}

absl::StatusOr<TaskInfo> TaskStore::Get(absl::string_view task_id) const {
  absl::MutexLock lock(&mu_);
  const Record* r = FindLocked(task_id);
  if (r == nullptr) return NotFound(task_id);
  return InfoLocked(*r);
}

std::vector<LeasedTask> TaskStore::Lease(absl::string_view queue, int max_tasks,
                                         absl::Duration lease_duration, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  std::vector<LeasedTask> leased;
  absl::MutexLock lock(&mu_);
  auto it = queues_.find(queue);
  if (it == queues_.end()) return leased;
  Queue* q = it->second.get();
  while (q->pull.head != nullptr && static_cast<int>(leased.size()) < max_tasks) {
    Record* r = q->pull.head;
    UnlinkReadyLocked(r);
    SetStateLocked(r, TaskState::kLeased);
    ++r->attempts;
    r->lease_token = NewLeaseTokenLocked();
    r->lease_expire_time = now + lease_duration;
    SetLsn(lsn, ChangedLocked(r));
    LeasedTask& t = leased.emplace_back();
    t.task_id = r->task_id;
    t.queue = q->name;
    t.payload = r->payload;
    t.headers = r->headers;
    t.attempt = r->attempts;
    t.due_time = r->due_time;
    t.lease_token = r->lease_token;
    t.lease_expire_time = r->lease_expire_time;
  }
  return leased;
}

absl::StatusOr<TaskStore::Record*> TaskStore::FindPendingLocked(absl::string_view task_id,
                                                                absl::string_view verb) const {
  Record* r = FindLocked(task_id);
  if (r == nullptr) return NotFound(task_id);
  if (r->state != TaskState::kScheduled && r->state != TaskState::kReady) {
    return absl::FailedPreconditionError(
        absl::StrCat("task \"", task_id, "\" is ", TaskStateName(r->state),
                     "; only SCHEDULED or READY tasks can be ", verb));
  }
  return r;
}

absl::StatusOr<TaskStore::Record*> TaskStore::FindLeasedLocked(
    absl::string_view task_id, absl::string_view lease_token) const {
  Record* r = FindLocked(task_id);
  if (r == nullptr) return NotFound(task_id);
  if (r->state != TaskState::kLeased) {
    return absl::FailedPreconditionError(
        absl::StrCat("task \"", task_id, "\" is ", TaskStateName(r->state),
                     ", not LEASED: its lease expired or it was already acknowledged"));
  }
  if (r->lease_token != lease_token) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease_token does not match the current lease of task \"", task_id,
                     "\": the lease expired and the task was handed out again"));
  }
  return r;
}

absl::StatusOr<TaskInfo> TaskStore::Ack(absl::string_view task_id, absl::string_view lease_token,
                                        uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> r = FindLeasedLocked(task_id, lease_token);
  if (!r.ok()) return r.status();
  FinishLocked(*r, TaskState::kSucceeded, now);
  SetLsn(lsn, ChangedLocked(*r));
  return InfoLocked(**r);
}

absl::StatusOr<TaskInfo> TaskStore::Nack(absl::string_view task_id, absl::string_view lease_token,
                                         std::optional<absl::Duration> retry_delay,
                                         std::string error, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> r = FindLeasedLocked(task_id, lease_token);
  if (!r.ok()) return r.status();
  FailAttemptLocked(*r, now, retry_delay, std::move(error));
  SetLsn(lsn, ChangedLocked(*r));
  return InfoLocked(**r);
}

absl::StatusOr<absl::Time> TaskStore::ExtendLease(absl::string_view task_id,
                                                  absl::string_view lease_token,
                                                  absl::Duration lease_duration, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> r = FindLeasedLocked(task_id, lease_token);
  if (!r.ok()) return r.status();
  (*r)->lease_expire_time = now + lease_duration;
  SetLsn(lsn, ChangedLocked(*r));
  return (*r)->lease_expire_time;
}

void TaskStore::FailAttemptLocked(Record* r, absl::Time now,
                                  std::optional<absl::Duration> retry_delay, std::string error) {
  r->last_error = std::move(error);
  r->lease_token.clear();
  if (r->attempts >= r->retry_policy.max_attempts) {
    FinishLocked(r, TaskState::kDead, now);
    return;
  }
  SetStateLocked(r, TaskState::kScheduled);
  r->due_time = now + retry_delay.value_or(r->retry_policy.Backoff(r->attempts));
}

void TaskStore::FinishLocked(Record* r, TaskState final_state, absl::Time now) {
  UnlinkReadyLocked(r);
  SetStateLocked(r, final_state);
  r->finish_time = now;
  r->lease_token.clear();
  // The payload is never handed out again: free it. Its fingerprint still answers idempotency.
  if (!KeepsPayload(final_state)) {
    std::string().swap(r->payload);
    Headers().swap(r->headers);
  }
}

void TaskStore::EraseLocked(Record* r) {
  DisarmLocked(r);
  UnlinkReadyLocked(r);
  --r->queue->counts[static_cast<int>(r->state)];
  if (!IsFinal(r->state)) --pending_;
  by_id_.erase(r->task_id);
  const uint32_t slot = r->slot;
  slots_[slot].reset();
  free_slots_.push_back(slot);
}

std::optional<PushTask> TaskStore::ClaimPush(absl::string_view queue, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  auto it = queues_.find(queue);
  if (it == queues_.end() || it->second->push.head == nullptr) return std::nullopt;
  Record* r = it->second->push.head;
  UnlinkReadyLocked(r);
  SetStateLocked(r, TaskState::kLeased);
  ++r->attempts;
  r->lease_token = NewLeaseTokenLocked();
  r->lease_expire_time = now + r->target->dispatch_deadline + kPushLeaseSlack;
  SetLsn(lsn, ChangedLocked(r));
  PushTask task;
  task.task_id = r->task_id;
  task.queue = r->queue->name;
  task.payload = r->payload;
  task.headers = r->headers;
  task.attempt = r->attempts;
  task.due_time = r->due_time;
  task.lease_token = r->lease_token;
  task.target = *r->target;
  return task;
}

absl::StatusOr<TaskInfo> TaskStore::FinishPush(absl::string_view task_id,
                                               absl::string_view lease_token,
                                               const PushOutcome& outcome, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> found = FindLeasedLocked(task_id, lease_token);
  if (!found.ok()) return found.status();
  Record* r = *found;
  switch (outcome.kind) {
    case PushOutcome::Kind::kSucceeded:
      FinishLocked(r, TaskState::kSucceeded, now);
      break;
    case PushOutcome::Kind::kRetry:
      // A receiver's Retry-After is honoured up to kMaxRetryAfter: it comes from the network and
      // must not push a timer past the wheel's horizon.
      FailAttemptLocked(r, now,
                        std::max(r->retry_policy.Backoff(r->attempts),
                                 std::min(outcome.retry_after, kMaxRetryAfter)),
                        outcome.error);
      break;
    case PushOutcome::Kind::kDead:
      r->last_error = outcome.error;
      FinishLocked(r, TaskState::kDead, now);
      break;
    case PushOutcome::Kind::kReleased:
      --r->attempts;
      r->lease_token.clear();
      SetStateLocked(r, TaskState::kScheduled);
      r->due_time = now;
      break;
  }
  SetLsn(lsn, ChangedLocked(r));
  return InfoLocked(*r);
}

absl::StatusOr<TaskInfo> TaskStore::Retry(absl::string_view task_id, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  Record* r = FindLocked(task_id);
  if (r == nullptr) return NotFound(task_id);
  if (r->state != TaskState::kDead) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task \"", task_id, "\" is ", TaskStateName(r->state), "; only DEAD tasks can be retried"));
  }
  SetStateLocked(r, TaskState::kScheduled);
  r->attempts = 0;
  r->due_time = now;
  r->finish_time = absl::UnixEpoch();
  SetLsn(lsn, ChangedLocked(r));
  return InfoLocked(*r);
}

TaskPage TaskStore::List(absl::string_view queue, std::optional<TaskState> state, size_t page_size,
                         uint64_t cursor) const {
  // Slots are visited in order and a task keeps its slot for life, so a cursor (the next slot)
  // survives changes between pages. The lock is dropped every kSlotsPerHold slots.
  constexpr size_t kSlotsPerHold = 4096;
  TaskPage page;
  page_size = std::max<size_t>(page_size, 1);
  while (true) {
    absl::MutexLock lock(&mu_);
    const size_t end = std::min<size_t>(slots_.size(), cursor + kSlotsPerHold);
    while (cursor < end && page.tasks.size() < page_size) {
      const Record* r = slots_[cursor++].get();
      if (r == nullptr) continue;
      if (!queue.empty() && r->queue->name != queue) continue;
      if (state.has_value() && r->state != *state) continue;
      page.tasks.push_back(InfoLocked(*r));
    }
    if (cursor >= slots_.size()) return page;  // next_cursor 0: done
    if (page.tasks.size() >= page_size) {
      page.next_cursor = cursor;
      return page;
    }
  }
}

TimerOutcome TaskStore::OnTimer(uint64_t cookie) {
  const absl::Time now = clock_.Now();
  TimerOutcome outcome;
  const uint32_t slot = static_cast<uint32_t>(cookie >> 32);
  const uint32_t generation = static_cast<uint32_t>(cookie);
  absl::MutexLock lock(&mu_);
  if ((cookie & kExternalCookieBit) != 0 || slot >= slots_.size()) return outcome;
  Record* r = slots_[slot].get();
  if (r == nullptr || r->timer_generation != generation) return outcome;
  r->timer_generation = 0;
  outcome.queue = r->queue->name;
  outcome.task_id = r->task_id;
  switch (r->state) {
    case TaskState::kScheduled:
      SetStateLocked(r, TaskState::kReady);
      PushReadyLocked(r);
      outcome.kind = TimerOutcome::Kind::kReady;
      outcome.lateness = std::max(absl::ZeroDuration(), now - r->due_time);
      outcome.push = r->target != nullptr;
      break;
    case TaskState::kLeased:
      FailAttemptLocked(
          r, now, std::nullopt,
          r->target != nullptr
              ? absl::StrCat("delivery attempt ", r->attempts,
                             " did not finish by its dispatch deadline (the server stopped "
                             "during the delivery)")
              : absl::StrCat("lease expired at ", absl::FormatTime(r->lease_expire_time),
                             " without Ack or Nack"));
      ChangedLocked(r);
      outcome.kind = r->state == TaskState::kDead ? TimerOutcome::Kind::kLeaseDead
                                                  : TimerOutcome::Kind::kLeaseRetry;
      break;
    case TaskState::kSucceeded:
    case TaskState::kCancelled:
    case TaskState::kDead:
      if (log_ != nullptr) {
        store::v1::LogRecord record;
        record.mutable_forget()->set_task_id(r->task_id);
        LogLocked(record);
      }
      EraseLocked(r);
      outcome.kind = TimerOutcome::Kind::kForgotten;
      break;
    case TaskState::kReady:
      break;  // READY tasks have no timer armed.
  }
  return outcome;
}

namespace {

bool ValidState(int32_t state) { return state >= 1 && state < kTaskStateCount; }

// The time a replayed task's timer will be armed for must lie within the timing wheel's horizon
// (a validated Schedule never goes beyond --max_delay, which is inside it). A record beyond it is
// corrupt, or the wall clock was set back by years; either way recovery must refuse it, not arm
// it (which ends the process).
absl::Status CheckTimerWithinHorizon(const store::v1::TaskUpdate& update, absl::Time now,
                                     absl::Duration retention) {
  absl::Time when;
  const auto state = static_cast<TaskState>(update.state());
  if (state == TaskState::kLeased) {
    when = absl::FromUnixNanos(update.lease_expire_time_unix_nanos());
  } else if (IsFinal(state)) {
    when = absl::FromUnixNanos(update.finish_time_unix_nanos()) + retention;
  } else {
    when = absl::FromUnixNanos(update.due_time_unix_nanos());
  }
  const absl::Time limit = now + absl::Milliseconds(TimingWheel::kHorizonMs) - absl::Hours(1);
  if (when > limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task \"", update.task_id(), "\" (", TaskStateName(state), ") needs a timer at ",
        absl::FormatTime(when), ", beyond the timing wheel's horizon (", absl::FormatTime(limit),
        "): the record is corrupt, or the clock was set back"));
  }
  return absl::OkStatus();
}

}  // namespace

void TaskStore::ApplyUpdateLocked(Record* r, const store::v1::TaskUpdate& update) {
  SetStateLocked(r, static_cast<TaskState>(update.state()));
  r->attempts = update.attempts();
  r->due_time = absl::FromUnixNanos(update.due_time_unix_nanos());
  r->lease_token = update.lease_token();
  r->lease_expire_time = absl::FromUnixNanos(update.lease_expire_time_unix_nanos());
  r->last_error = update.last_error();
  r->finish_time = absl::FromUnixNanos(update.finish_time_unix_nanos());
  if (!KeepsPayload(r->state)) {
    std::string().swap(r->payload);
    Headers().swap(r->headers);
  }
}

absl::Status TaskStore::Replay(const store::v1::LogRecord& record) {
  absl::MutexLock lock(&mu_);
  switch (record.change_case()) {
    case store::v1::LogRecord::kPut: {
      const store::v1::TaskPut& put = record.put();
      if (put.task_id().empty() || put.queue().empty() || !ValidState(put.state().state())) {
        return absl::InvalidArgumentError(
            absl::StrCat("TaskPut without task_id or queue, or with state ", put.state().state()));
      }
      if (absl::Status s = CheckTimerWithinHorizon(put.state(), clock_.Now(), options_.retention);
          !s.ok()) {
        return s;
      }
      // A newer incarnation of the id (a fuzzy snapshot's) is replaced: later records rebuild it.
      if (Record* old = FindLocked(put.task_id()); old != nullptr) EraseLocked(old);
      Record* r = NewRecordLocked(put.queue(), put.task_id());
      r->payload = put.payload();
      for (const store::v1::Header& header : put.headers()) {
        r->headers.emplace_back(header.key(), header.value());
      }
      r->payload_fingerprint = put.payload_fingerprint();
      r->payload_size_bytes = put.payload_size_bytes();
      r->create_time = absl::FromUnixNanos(put.create_time_unix_nanos());
      r->first_due_time = absl::FromUnixNanos(put.first_due_time_unix_nanos());
      r->retry_policy.max_attempts = put.max_attempts();
      r->retry_policy.min_backoff = absl::Nanoseconds(put.min_backoff_nanos());
      r->retry_policy.max_backoff = absl::Nanoseconds(put.max_backoff_nanos());
      if (put.has_target()) {
        if (put.target().kind() != static_cast<int32_t>(PushTarget::Kind::kHttp) &&
            put.target().kind() != static_cast<int32_t>(PushTarget::Kind::kGrpc)) {
          EraseLocked(r);
          return absl::InvalidArgumentError(absl::StrCat(
              "TaskPut of \"", put.task_id(), "\" with target kind ", put.target().kind()));
        }
        r->target = std::make_unique<PushTarget>(TargetFromProto(put.target()));
      }
      ApplyUpdateLocked(r, put.state());
      return absl::OkStatus();
    }
    case store::v1::LogRecord::kUpdate: {
      const store::v1::TaskUpdate& update = record.update();
      if (!ValidState(update.state())) {
        return absl::InvalidArgumentError(
            absl::StrCat("TaskUpdate of \"", update.task_id(), "\" with state ", update.state()));
      }
      if (absl::Status s = CheckTimerWithinHorizon(update, clock_.Now(), options_.retention);
          !s.ok()) {
        return s;
      }
      // Unknown: forgotten before a fuzzy snapshot visited its slot; a later forget follows.
      if (Record* r = FindLocked(update.task_id()); r != nullptr) ApplyUpdateLocked(r, update);
      return absl::OkStatus();
    }
    case store::v1::LogRecord::kForget:
      if (Record* r = FindLocked(record.forget().task_id()); r != nullptr) EraseLocked(r);
      return absl::OkStatus();
    case store::v1::LogRecord::CHANGE_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("LogRecord with no change");
}

void TaskStore::FinishRecovery() {
  absl::MutexLock lock(&mu_);
  for (auto& record : slots_) {
    Record* r = record.get();
    if (r == nullptr) continue;
    // READY is not logged: a READY task is a SCHEDULED one whose due time has passed.
    if (r->state == TaskState::kReady) SetStateLocked(r, TaskState::kScheduled);
    ArmForStateLocked(r);
  }
}

bool TaskStore::SnapshotChunk(size_t* cursor, size_t max_tasks,
                              std::vector<store::v1::LogRecord>* out) {
  absl::MutexLock lock(&mu_);
  size_t taken = 0;
  max_tasks = std::max<size_t>(max_tasks, 1);
  while (*cursor < slots_.size() && taken < max_tasks) {
    const Record* r = slots_[(*cursor)++].get();
    if (r == nullptr) continue;
    PutToProtoLocked(*r, out->emplace_back().mutable_put());
    ++taken;
  }
  return *cursor < slots_.size();
}

std::vector<QueueCounts> TaskStore::Counts() const {
  absl::MutexLock lock(&mu_);
  std::vector<QueueCounts> counts;
  counts.reserve(queues_.size());
  for (const auto& [name, queue] : queues_) counts.push_back({name, queue->counts});
  return counts;
}

size_t TaskStore::size() const {
  absl::MutexLock lock(&mu_);
  return by_id_.size();
}

int64_t TaskStore::pending() const {
  absl::MutexLock lock(&mu_);
  return pending_;
}

}  // namespace hourglass

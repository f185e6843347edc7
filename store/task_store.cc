#include "store/task_store.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "absl/hash/hash.h"
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
// Below this capacity, the id index grows the ordinary way (see NewRecordLocked).
constexpr size_t kIndexRebuildMinCapacity = 1023;

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
  uint32_t index = 0;  // in queue_list_, for Record::queue_index
  // Intrusive FIFOs of READY records, by slot (Record::ready_prev/ready_next): pull tasks for
  // Lease, push tasks for ClaimPush.
  struct ReadyList {
    uint32_t head = kNoSlot;
    uint32_t tail = kNoSlot;
  };
  ReadyList pull;
  ReadyList push;
  std::array<int64_t, kTaskStateCount> counts{};
};

// The hot part of a task: what every task needs, in one allocation with its id and payload
// (96 bytes, then task_id, then payload). A SCHEDULED pull task with default options has nothing
// else but its index entry and its slot.
struct TaskStore::Record {
  static constexpr uint8_t kInReadyList = 1;
  static constexpr uint8_t kPush = 2;               // a push task (its target is in the cold part)
  static constexpr uint8_t kHasCold = 4;            // cold_ holds this slot's cold part
  static constexpr uint8_t kLoggedFingerprint = 8;  // see put_lsn_or_fingerprint

  // A record holding `task_id` and `payload` (bytes after the fixed part).
  static Record* New(absl::string_view task_id, absl::string_view payload) {
    // The memory per pending task (issue 6) depends on it: grow it only for a good reason.
    static_assert(sizeof(Record) == 96, "the fixed part of a task is 96 bytes");
    void* memory = ::operator new(sizeof(Record) + task_id.size() + payload.size());
    Record* r = new (memory) Record;
    r->id_bytes = static_cast<uint16_t>(task_id.size());
    r->payload_bytes = static_cast<uint32_t>(payload.size());
    char* tail = reinterpret_cast<char*>(r + 1);
    if (!task_id.empty()) std::memcpy(tail, task_id.data(), task_id.size());
    if (!payload.empty()) std::memcpy(tail + task_id.size(), payload.data(), payload.size());
    return r;
  }
  static void Delete(Record* r) {
    r->~Record();
    ::operator delete(static_cast<void*>(r));
  }

  absl::string_view task_id() const {
    return absl::string_view(reinterpret_cast<const char*>(this + 1), id_bytes);
  }
  absl::string_view payload() const {
    return absl::string_view(reinterpret_cast<const char*>(this + 1) + id_bytes, payload_bytes);
  }
  TaskState state() const { return static_cast<TaskState>(state_code); }
  uint64_t put_lsn() const {
    return (flags & kLoggedFingerprint) != 0 ? 0 : put_lsn_or_fingerprint;
  }
  absl::Time due_time() const { return absl::FromUnixNanos(due_ns); }

  TimerEntry timer;  // the one timer: due time, lease end or retention end
  uint32_t slot = kNoSlot;
  uint32_t timer_generation = 0;  // of the current arming; 0 when disarmed
  int64_t due_ns = 0;             // Unix nanoseconds, as in the log
  int64_t create_ns = 0;
  // A scheduled task: the LSN of its put (0 without a log). A recovered task (kLoggedFingerprint):
  // its payload's fingerprint as logged, which saves hashing every payload during recovery; its
  // put is durable.
  uint64_t put_lsn_or_fingerprint = 0;
  uint32_t queue_index = 0;
  uint32_t payload_bytes = 0;  // stored after the id; 0 once dropped (SUCCEEDED, CANCELLED)
  uint32_t ready_prev = kNoSlot;
  uint32_t ready_next = kNoSlot;
  int32_t attempts = 0;
  uint16_t id_bytes = 0;
  uint8_t state_code = static_cast<uint8_t>(TaskState::kScheduled);
  uint8_t flags = 0;
};

// The cold part of a task. Every field at its default means "as the hot part says": the record
// then has no cold part at all.
struct TaskStore::Cold {
  Headers headers;                            // dropped when the task succeeds or is cancelled
  std::unique_ptr<PushTarget> target;         // push tasks only
  std::unique_ptr<RetryPolicy> retry_policy;  // when not RetryPolicy{}
  std::string lease_token;                    // LEASED only
  std::string last_error;
  int64_t lease_expire_ns = 0;  // LEASED only
  int64_t finish_ns = 0;        // final states only
  // As answered to Schedule, when the due time has moved since.
  std::optional<int64_t> first_due_ns;
  // When the payload is gone (or its fingerprint is not the payload's own, after a replay).
  std::optional<uint64_t> fingerprint;
  std::optional<int64_t> payload_size_bytes;  // when not the size of the payload held

  bool Empty() const {
    return headers.empty() && target == nullptr && retry_policy == nullptr && lease_token.empty() &&
           last_error.empty() && lease_expire_ns == 0 && finish_ns == 0 &&
           !first_due_ns.has_value() && !fingerprint.has_value() && !payload_size_bytes.has_value();
  }
};

namespace {

bool IsDefault(const RetryPolicy& p) {
  const RetryPolicy d;
  return p.max_attempts == d.max_attempts && p.min_backoff == d.min_backoff &&
         p.max_backoff == d.max_backoff;
}

const RetryPolicy& DefaultRetryPolicy() {
  static const RetryPolicy* const kDefault = new RetryPolicy();
  return *kDefault;
}

}  // namespace

size_t TaskStore::IdHash::operator()(absl::string_view task_id) const {
  return absl::Hash<absl::string_view>()(task_id);
}
size_t TaskStore::IdHash::operator()(uint32_t slot) const {
  return (*this)((*slots)[slot]->task_id());
}
bool TaskStore::IdEq::operator()(uint32_t slot, absl::string_view task_id) const {
  return (*slots)[slot]->task_id() == task_id;
}

TaskStore::TaskStore(Clock& clock, Timers& timers, Options options, TaskLog* log)
    : clock_(clock),
      timers_(timers),
      options_(options),
      log_(log),
      by_id_(0, IdHash{&slots_}, IdEq{&slots_}) {}

TaskStore::~TaskStore() {
  absl::MutexLock lock(&mu_);
  for (Record* r : slots_) {
    if (r != nullptr) timers_.Cancel(&r->timer);
  }
  by_id_.clear();
  for (Record*& r : slots_) {
    if (r != nullptr) Record::Delete(std::exchange(r, nullptr));
  }
}

TaskStore::Record* TaskStore::FindLocked(absl::string_view task_id) const {
  auto it = by_id_.find(task_id);
  return it == by_id_.end() ? nullptr : slots_[*it];
}

TaskStore::Queue* TaskStore::QueueLocked(absl::string_view name) {
  // Most records of a batch or a replay name the queue of the one before.
  if (last_queue_ != nullptr && last_queue_->name == name) return last_queue_;
  auto it = queues_.find(name);
  if (it != queues_.end()) return last_queue_ = it->second.get();
  auto queue = std::make_unique<Queue>();
  queue->name = std::string(name);
  queue->index = static_cast<uint32_t>(queue_list_.size());
  Queue* raw = queue.get();
  queue_list_.push_back(raw);
  queues_.emplace(queue->name, std::move(queue));
  return last_queue_ = raw;
}

TaskStore::Queue& TaskStore::QueueOf(const Record& r) const { return *queue_list_[r.queue_index]; }

TaskStore::Cold& TaskStore::ColdLocked(Record* r) {
  r->flags |= Record::kHasCold;
  return cold_[r->slot];
}

const TaskStore::Cold* TaskStore::FindColdLocked(const Record& r) const {
  if ((r.flags & Record::kHasCold) == 0) return nullptr;
  auto it = cold_.find(r.slot);
  return it == cold_.end() ? nullptr : &it->second;
}

void TaskStore::MaybeDropColdLocked(Record* r) {
  if ((r->flags & Record::kHasCold) == 0) return;
  auto it = cold_.find(r->slot);
  if (it != cold_.end() && !it->second.Empty()) return;
  if (it != cold_.end()) cold_.erase(it);
  r->flags &= ~Record::kHasCold;
}

absl::Time TaskStore::FirstDueTimeLocked(const Record& r) const {
  const Cold* cold = FindColdLocked(r);
  return absl::FromUnixNanos(cold != nullptr && cold->first_due_ns.has_value() ? *cold->first_due_ns
                                                                               : r.due_ns);
}

uint64_t TaskStore::FingerprintLocked(const Record& r) const {
  if ((r.flags & Record::kLoggedFingerprint) != 0) return r.put_lsn_or_fingerprint;
  const Cold* cold = FindColdLocked(r);
  if (cold != nullptr && cold->fingerprint.has_value()) return *cold->fingerprint;
  return TaskFingerprint(r.payload(), cold != nullptr ? cold->target.get() : nullptr);
}

int64_t TaskStore::PayloadSizeLocked(const Record& r) const {
  const Cold* cold = FindColdLocked(r);
  return cold != nullptr && cold->payload_size_bytes.has_value() ? *cold->payload_size_bytes
                                                                 : r.payload_bytes;
}

const RetryPolicy& TaskStore::RetryPolicyLocked(const Record& r) const {
  const Cold* cold = FindColdLocked(r);
  return cold != nullptr && cold->retry_policy != nullptr ? *cold->retry_policy
                                                          : DefaultRetryPolicy();
}

void TaskStore::SetDueLocked(Record* r, absl::Time due_time) {
  const int64_t due_ns = absl::ToUnixNanos(due_time);
  if (due_ns == r->due_ns) return;
  const Cold* cold = FindColdLocked(*r);
  if (cold == nullptr || !cold->first_due_ns.has_value()) ColdLocked(r).first_due_ns = r->due_ns;
  r->due_ns = due_ns;
}

void TaskStore::SetLeaseLocked(Record* r, std::string lease_token, absl::Time expire_time) {
  Cold& cold = ColdLocked(r);
  cold.lease_token = std::move(lease_token);
  cold.lease_expire_ns = absl::ToUnixNanos(expire_time);
}

void TaskStore::ClearLeaseLocked(Record* r) {
  if ((r->flags & Record::kHasCold) == 0) return;
  Cold& cold = ColdLocked(r);
  std::string().swap(cold.lease_token);
  cold.lease_expire_ns = 0;
  MaybeDropColdLocked(r);
}

void TaskStore::SetLastErrorLocked(Record* r, std::string error) {
  if (error.empty() && FindColdLocked(*r) == nullptr) return;
  ColdLocked(r).last_error = std::move(error);
  MaybeDropColdLocked(r);
}

TaskStore::Record* TaskStore::DropPayloadLocked(Record* r) {
  if (r->payload_bytes == 0) {
    if (const Cold* cold = FindColdLocked(*r); cold != nullptr && !cold->headers.empty()) {
      Headers().swap(ColdLocked(r).headers);
    }
    return r;
  }
  // Size and fingerprint outlive the payload (GetStatus, idempotency).
  const int64_t size = PayloadSizeLocked(*r);
  if ((r->flags & Record::kLoggedFingerprint) == 0) {
    const uint64_t fingerprint = FingerprintLocked(*r);
    ColdLocked(r).fingerprint = fingerprint;
  }
  Cold& cold = ColdLocked(r);
  cold.payload_size_bytes = size;
  Headers().swap(cold.headers);
  Record* copy = Record::New(r->task_id(), absl::string_view());
  copy->slot = r->slot;
  copy->due_ns = r->due_ns;
  copy->create_ns = r->create_ns;
  copy->put_lsn_or_fingerprint = r->put_lsn_or_fingerprint;
  copy->queue_index = r->queue_index;
  copy->attempts = r->attempts;
  copy->state_code = r->state_code;
  copy->flags = r->flags;
  slots_[r->slot] = copy;  // the index hashes through slots_: the same id
  Record::Delete(r);
  return copy;
}

void TaskStore::SetStateLocked(Record* r, TaskState state) {
  Queue& queue = QueueOf(*r);
  --queue.counts[r->state_code];
  ++queue.counts[static_cast<int>(state)];
  pending_ += static_cast<int>(IsFinal(r->state())) - static_cast<int>(IsFinal(state));
  r->state_code = static_cast<uint8_t>(state);
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
  switch (r->state()) {
    case TaskState::kScheduled:
      ArmLocked(r, r->due_time());
      break;
    case TaskState::kReady:
      DisarmLocked(r);  // it waits in its queue's ready list instead
      break;
    case TaskState::kLeased: {
      const Cold* cold = FindColdLocked(*r);
      ArmLocked(r, absl::FromUnixNanos(cold != nullptr ? cold->lease_expire_ns : 0));
      break;
    }
    case TaskState::kSucceeded:
    case TaskState::kCancelled:
    case TaskState::kDead: {
      const Cold* cold = FindColdLocked(*r);
      ArmLocked(r, absl::FromUnixNanos(cold != nullptr ? cold->finish_ns : 0) + options_.retention);
      break;
    }
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
  const Cold* cold = FindColdLocked(r);
  update->set_task_id(std::string(r.task_id()));
  update->set_state(static_cast<int32_t>(r.state()));
  update->set_attempts(r.attempts);
  update->set_due_time_unix_nanos(r.due_ns);
  if (cold != nullptr) {
    update->set_lease_token(cold->lease_token);
    update->set_lease_expire_time_unix_nanos(cold->lease_expire_ns);
    update->set_last_error(cold->last_error);
    update->set_finish_time_unix_nanos(cold->finish_ns);
  }
}

void TaskStore::PutToProtoLocked(const Record& r, store::v1::TaskPut* put) const {
  const Cold* cold = FindColdLocked(r);
  put->set_task_id(std::string(r.task_id()));
  put->set_queue(QueueOf(r).name);
  put->set_payload(std::string(r.payload()));
  if (cold != nullptr) {
    for (const auto& [key, value] : cold->headers) {
      store::v1::Header* header = put->add_headers();
      header->set_key(key);
      header->set_value(value);
    }
  }
  put->set_payload_fingerprint(FingerprintLocked(r));
  put->set_payload_size_bytes(PayloadSizeLocked(r));
  put->set_create_time_unix_nanos(r.create_ns);
  put->set_first_due_time_unix_nanos(absl::ToUnixNanos(FirstDueTimeLocked(r)));
  const RetryPolicy& policy = RetryPolicyLocked(r);
  put->set_max_attempts(policy.max_attempts);
  put->set_min_backoff_nanos(absl::ToInt64Nanoseconds(policy.min_backoff));
  put->set_max_backoff_nanos(absl::ToInt64Nanoseconds(policy.max_backoff));
  UpdateToProtoLocked(r, put->mutable_state());
  if (cold != nullptr && cold->target != nullptr) {
    TargetToProto(*cold->target, put->mutable_target());
  }
}

TaskStore::Record* TaskStore::NewRecordLocked(absl::string_view queue, absl::string_view task_id,
                                              absl::string_view payload) {
  Record* r = Record::New(task_id, payload);
  if (free_slots_.empty()) {
    r->slot = static_cast<uint32_t>(slots_.size());
    slots_.push_back(r);
  } else {
    r->slot = free_slots_.back();
    free_slots_.pop_back();
    slots_[r->slot] = r;
  }
  Queue* q = QueueLocked(queue);
  r->queue_index = q->index;
  r->state_code = static_cast<uint8_t>(TaskState::kScheduled);
  ++q->counts[static_cast<int>(TaskState::kScheduled)];
  ++pending_;
  // The index is full when absl would grow it on this insert: grow it here instead, inserting in
  // slot order. absl's own growth visits its old table in hash order, and hashing an entry reads
  // slots_ and the record at random (two cache misses an entry: a quarter of a recovery's time);
  // in slot order both are read front to back.
  const size_t capacity = by_id_.capacity();
  if (capacity >= kIndexRebuildMinCapacity && by_id_.size() + 1 > capacity - capacity / 8) {
    IdIndex grown(0, IdHash{&slots_}, IdEq{&slots_});
    // Twice the capacity, as absl grows: reserve() takes a number of entries, and asking for
    // more than this capacity holds at its load factor would double it once more.
    const size_t grown_capacity = 2 * capacity + 1;
    grown.reserve(grown_capacity - grown_capacity / 8);
    for (uint32_t slot = 0; slot < slots_.size(); ++slot) {
      if (slots_[slot] != nullptr) grown.insert(slot);  // r's too
    }
    by_id_.swap(grown);
  } else {
    by_id_.insert(r->slot);
  }
  return r;
}

void TaskStore::PushReadyLocked(Record* r) {
  // Ordered by due time (ties in arrival order), so that Lease hands out the oldest due first
  // even when workers make tasks of one tick READY in another order. Tasks nearly always become
  // READY in due order, so the walk from the tail stops at once.
  Queue& q = QueueOf(*r);
  Queue::ReadyList& list = (r->flags & Record::kPush) != 0 ? q.push : q.pull;
  uint32_t after = list.tail;
  while (after != kNoSlot && slots_[after]->due_ns > r->due_ns) after = slots_[after]->ready_prev;
  r->ready_prev = after;
  r->ready_next = after != kNoSlot ? slots_[after]->ready_next : list.head;
  (r->ready_next != kNoSlot ? slots_[r->ready_next]->ready_prev : list.tail) = r->slot;
  (after != kNoSlot ? slots_[after]->ready_next : list.head) = r->slot;
  r->flags |= Record::kInReadyList;
}

void TaskStore::UnlinkReadyLocked(Record* r) {
  if ((r->flags & Record::kInReadyList) == 0) return;
  Queue& q = QueueOf(*r);
  Queue::ReadyList& list = (r->flags & Record::kPush) != 0 ? q.push : q.pull;
  (r->ready_prev != kNoSlot ? slots_[r->ready_prev]->ready_next : list.head) = r->ready_next;
  (r->ready_next != kNoSlot ? slots_[r->ready_next]->ready_prev : list.tail) = r->ready_prev;
  r->ready_prev = r->ready_next = kNoSlot;
  r->flags &= ~Record::kInReadyList;
}

TaskInfo TaskStore::InfoLocked(const Record& r) const {
  const Cold* cold = FindColdLocked(r);
  TaskInfo info;
  info.task_id = std::string(r.task_id());
  info.queue = QueueOf(r).name;
  info.state = r.state();
  info.attempts = r.attempts;
  info.due_time = r.due_time();
  info.create_time = absl::FromUnixNanos(r.create_ns);
  if (r.state() == TaskState::kLeased) {
    info.lease_expire_time = absl::FromUnixNanos(cold != nullptr ? cold->lease_expire_ns : 0);
  }
  if (IsFinal(r.state()))
    info.finish_time = absl::FromUnixNanos(cold != nullptr ? cold->finish_ns : 0);
  if (cold != nullptr) info.last_error = cold->last_error;
  info.retry_policy = RetryPolicyLocked(r);
  info.payload_size_bytes = PayloadSizeLocked(r);
  if (cold != nullptr && cold->target != nullptr) info.target = *cold->target;
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
  if (task.task_id.size() > kMaxTaskIdBytes || task.payload.size() > kMaxPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task_id must be at most ", kMaxTaskIdBytes, " bytes and payload at most ",
        kMaxPayloadBytes, " bytes, got ", task.task_id.size(), " and ", task.payload.size()));
  }
  // Outside the lock: O(payload).
  const uint64_t fingerprint =
      TaskFingerprint(task.payload, task.target.has_value() ? &*task.target : nullptr);
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  if (!task.task_id.empty()) {
    if (const Record* existing = FindLocked(task.task_id); existing != nullptr) {
      const std::string& existing_queue = QueueOf(*existing).name;
      if (existing_queue != task.queue || FingerprintLocked(*existing) != fingerprint) {
        return absl::AlreadyExistsError(absl::StrCat(
            "task_id \"", task.task_id, "\" is already used by a task with ",
            existing_queue != task.queue ? absl::StrCat("queue \"", existing_queue, "\"")
                                         : std::string("a different payload or push target"),
            "; choose another task_id or repeat the original request"));
      }
      // Answered no sooner than the original: its put may not be durable yet.
      if (lsn != nullptr && existing->put_lsn() > 0) *lsn = existing->put_lsn();
      return ScheduleResult{std::string(existing->task_id()), FirstDueTimeLocked(*existing),
                            /*created=*/false};
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

  Record* r = NewRecordLocked(task.queue, task.task_id, task.payload);
  r->due_ns = absl::ToUnixNanos(std::max(task.due_time, now));
  r->create_ns = absl::ToUnixNanos(now);
  if (!task.headers.empty() || task.target.has_value() || !IsDefault(task.retry_policy)) {
    Cold& cold = ColdLocked(r);
    cold.headers = std::move(task.headers);
    if (task.target.has_value()) {
      cold.target = std::make_unique<PushTarget>(std::move(*task.target));
      r->flags |= Record::kPush;
    }
    if (!IsDefault(task.retry_policy))
      cold.retry_policy = std::make_unique<RetryPolicy>(task.retry_policy);
  }
  ArmForStateLocked(r);
  if (log_ != nullptr) {
    store::v1::LogRecord record;
    PutToProtoLocked(*r, record.mutable_put());
    r->put_lsn_or_fingerprint = LogLocked(record);
    if (lsn != nullptr) *lsn = r->put_lsn_or_fingerprint;
  }
  return ScheduleResult{std::string(r->task_id()), r->due_time(), /*created=*/true};
}

absl::StatusOr<TaskInfo> TaskStore::Cancel(absl::string_view task_id, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> found = FindPendingLocked(task_id, "cancelled");
  if (!found.ok()) return found.status();
  Record* r = FinishLocked(*found, TaskState::kCancelled, now);
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
  SetDueLocked(r, std::max(due_time, now));
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
  while (q->pull.head != kNoSlot && static_cast<int>(leased.size()) < max_tasks) {
    Record* r = slots_[q->pull.head];
    UnlinkReadyLocked(r);
    SetStateLocked(r, TaskState::kLeased);
    ++r->attempts;
    SetLeaseLocked(r, NewLeaseTokenLocked(), now + lease_duration);
    SetLsn(lsn, ChangedLocked(r));
    const Cold& cold = *FindColdLocked(*r);
    LeasedTask& t = leased.emplace_back();
    t.task_id = std::string(r->task_id());
    t.queue = q->name;
    t.payload = std::string(r->payload());
    t.headers = cold.headers;
    t.attempt = r->attempts;
    t.due_time = r->due_time();
    t.lease_token = cold.lease_token;
    t.lease_expire_time = absl::FromUnixNanos(cold.lease_expire_ns);
  }
  return leased;
}

absl::StatusOr<TaskStore::Record*> TaskStore::FindPendingLocked(absl::string_view task_id,
                                                                absl::string_view verb) const {
  Record* r = FindLocked(task_id);
  if (r == nullptr) return NotFound(task_id);
  if (r->state() != TaskState::kScheduled && r->state() != TaskState::kReady) {
    return absl::FailedPreconditionError(
        absl::StrCat("task \"", task_id, "\" is ", TaskStateName(r->state()),
                     "; only SCHEDULED or READY tasks can be ", verb));
  }
  return r;
}

absl::StatusOr<TaskStore::Record*> TaskStore::FindLeasedLocked(
    absl::string_view task_id, absl::string_view lease_token) const {
  Record* r = FindLocked(task_id);
  if (r == nullptr) return NotFound(task_id);
  if (r->state() != TaskState::kLeased) {
    return absl::FailedPreconditionError(
        absl::StrCat("task \"", task_id, "\" is ", TaskStateName(r->state()),
                     ", not LEASED: its lease expired or it was already acknowledged"));
  }
  const Cold* cold = FindColdLocked(*r);
  if (cold == nullptr || cold->lease_token != lease_token) {
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
  absl::StatusOr<Record*> found = FindLeasedLocked(task_id, lease_token);
  if (!found.ok()) return found.status();
  Record* r = FinishLocked(*found, TaskState::kSucceeded, now);
  SetLsn(lsn, ChangedLocked(r));
  return InfoLocked(*r);
}

absl::StatusOr<TaskInfo> TaskStore::Nack(absl::string_view task_id, absl::string_view lease_token,
                                         std::optional<absl::Duration> retry_delay,
                                         std::string error, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> found = FindLeasedLocked(task_id, lease_token);
  if (!found.ok()) return found.status();
  Record* r = FailAttemptLocked(*found, now, retry_delay, std::move(error));
  SetLsn(lsn, ChangedLocked(r));
  return InfoLocked(*r);
}

absl::StatusOr<absl::Time> TaskStore::ExtendLease(absl::string_view task_id,
                                                  absl::string_view lease_token,
                                                  absl::Duration lease_duration, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> r = FindLeasedLocked(task_id, lease_token);
  if (!r.ok()) return r.status();
  const absl::Time expire_time = now + lease_duration;
  ColdLocked(*r).lease_expire_ns = absl::ToUnixNanos(expire_time);
  SetLsn(lsn, ChangedLocked(*r));
  return absl::FromUnixNanos(ColdLocked(*r).lease_expire_ns);
}

TaskStore::Record* TaskStore::FailAttemptLocked(Record* r, absl::Time now,
                                                std::optional<absl::Duration> retry_delay,
                                                std::string error) {
  ClearLeaseLocked(r);
  SetLastErrorLocked(r, std::move(error));
  const RetryPolicy& policy = RetryPolicyLocked(*r);
  if (r->attempts >= policy.max_attempts) return FinishLocked(r, TaskState::kDead, now);
  const absl::Duration delay = retry_delay.value_or(policy.Backoff(r->attempts));
  SetStateLocked(r, TaskState::kScheduled);
  SetDueLocked(r, now + delay);
  return r;
}

TaskStore::Record* TaskStore::FinishLocked(Record* r, TaskState final_state, absl::Time now) {
  UnlinkReadyLocked(r);
  SetStateLocked(r, final_state);
  ClearLeaseLocked(r);
  ColdLocked(r).finish_ns = absl::ToUnixNanos(now);
  // The payload is never handed out again: free it. Its fingerprint still answers idempotency.
  if (!KeepsPayload(final_state)) {
    DisarmLocked(r);  // the record moves; ChangedLocked arms the copy
    r = DropPayloadLocked(r);
  }
  MaybeDropColdLocked(r);
  return r;
}

void TaskStore::EraseLocked(Record* r) {
  DisarmLocked(r);
  UnlinkReadyLocked(r);
  --QueueOf(*r).counts[r->state_code];
  if (!IsFinal(r->state())) --pending_;
  by_id_.erase(r->slot);
  if ((r->flags & Record::kHasCold) != 0) cold_.erase(r->slot);
  const uint32_t slot = r->slot;
  Record::Delete(r);
  slots_[slot] = nullptr;
  free_slots_.push_back(slot);
}

std::optional<PushTask> TaskStore::ClaimPush(absl::string_view queue, uint64_t* lsn) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  auto it = queues_.find(queue);
  if (it == queues_.end() || it->second->push.head == kNoSlot) return std::nullopt;
  Record* r = slots_[it->second->push.head];
  UnlinkReadyLocked(r);
  SetStateLocked(r, TaskState::kLeased);
  ++r->attempts;
  const PushTarget& target = *FindColdLocked(*r)->target;
  SetLeaseLocked(r, NewLeaseTokenLocked(), now + target.dispatch_deadline + kPushLeaseSlack);
  SetLsn(lsn, ChangedLocked(r));
  const Cold& cold = *FindColdLocked(*r);
  PushTask task;
  task.task_id = std::string(r->task_id());
  task.queue = QueueOf(*r).name;
  task.payload = std::string(r->payload());
  task.headers = cold.headers;
  task.attempt = r->attempts;
  task.due_time = r->due_time();
  task.lease_token = cold.lease_token;
  task.target = *cold.target;
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
      r = FinishLocked(r, TaskState::kSucceeded, now);
      break;
    case PushOutcome::Kind::kRetry:
      // A receiver's Retry-After is honoured up to kMaxRetryAfter: it comes from the network and
      // must not push a timer past the wheel's horizon.
      r = FailAttemptLocked(r, now,
                            std::max(RetryPolicyLocked(*r).Backoff(r->attempts),
                                     std::min(outcome.retry_after, kMaxRetryAfter)),
                            outcome.error);
      break;
    case PushOutcome::Kind::kDead:
      SetLastErrorLocked(r, outcome.error);
      r = FinishLocked(r, TaskState::kDead, now);
      break;
    case PushOutcome::Kind::kReleased:
      --r->attempts;
      ClearLeaseLocked(r);
      SetStateLocked(r, TaskState::kScheduled);
      SetDueLocked(r, now);
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
  if (r->state() != TaskState::kDead) {
    return absl::FailedPreconditionError(absl::StrCat("task \"", task_id, "\" is ",
                                                      TaskStateName(r->state()),
                                                      "; only DEAD tasks can be retried"));
  }
  SetStateLocked(r, TaskState::kScheduled);
  r->attempts = 0;
  SetDueLocked(r, now);
  ColdLocked(r).finish_ns = 0;
  MaybeDropColdLocked(r);
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
      const Record* r = slots_[cursor++];
      if (r == nullptr) continue;
      if (!queue.empty() && QueueOf(*r).name != queue) continue;
      if (state.has_value() && r->state() != *state) continue;
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
  Record* r = slots_[slot];
  if (r == nullptr || r->timer_generation != generation) return outcome;
  r->timer_generation = 0;
  outcome.queue = QueueOf(*r).name;
  outcome.task_id = std::string(r->task_id());
  switch (r->state()) {
    case TaskState::kScheduled:
      SetStateLocked(r, TaskState::kReady);
      PushReadyLocked(r);
      outcome.kind = TimerOutcome::Kind::kReady;
      outcome.lateness = std::max(absl::ZeroDuration(), now - r->due_time());
      outcome.push = (r->flags & Record::kPush) != 0;
      break;
    case TaskState::kLeased: {
      const Cold* cold = FindColdLocked(*r);
      std::string error =
          (r->flags & Record::kPush) != 0
              ? absl::StrCat("delivery attempt ", r->attempts,
                             " did not finish by its dispatch deadline (the server stopped "
                             "during the delivery)")
              : absl::StrCat("lease expired at ",
                             absl::FormatTime(
                                 absl::FromUnixNanos(cold != nullptr ? cold->lease_expire_ns : 0)),
                             " without Ack or Nack");
      r = FailAttemptLocked(r, now, std::nullopt, std::move(error));
      ChangedLocked(r);
      outcome.kind = r->state() == TaskState::kDead ? TimerOutcome::Kind::kLeaseDead
                                                    : TimerOutcome::Kind::kLeaseRetry;
      break;
    }
    case TaskState::kSucceeded:
    case TaskState::kCancelled:
    case TaskState::kDead:
      if (log_ != nullptr) {
        store::v1::LogRecord record;
        record.mutable_forget()->set_task_id(std::string(r->task_id()));
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

TaskStore::Record* TaskStore::ApplyUpdateLocked(Record* r, const store::v1::TaskUpdate& update) {
  const auto state = static_cast<TaskState>(update.state());
  SetStateLocked(r, state);
  r->attempts = update.attempts();
  SetDueLocked(r, absl::FromUnixNanos(update.due_time_unix_nanos()));
  // Records are absolute: what the update leaves out is at its default. A lease or a finish time
  // outside the states that have one says nothing (older versions logged stale ones).
  const bool leased = state == TaskState::kLeased;
  const bool final = IsFinal(state);
  if (leased || final || !update.last_error().empty() || FindColdLocked(*r) != nullptr) {
    Cold& cold = ColdLocked(r);
    cold.lease_token = leased ? update.lease_token() : std::string();
    cold.lease_expire_ns = leased ? update.lease_expire_time_unix_nanos() : 0;
    cold.last_error = update.last_error();
    cold.finish_ns = final ? update.finish_time_unix_nanos() : 0;
  }
  if (!KeepsPayload(state)) {
    DisarmLocked(r);  // not armed during recovery; the record moves
    r = DropPayloadLocked(r);
  }
  MaybeDropColdLocked(r);
  return r;
}

absl::Status TaskStore::Replay(const store::v1::LogRecord& record) {
  absl::MutexLock lock(&mu_);
  // Read once every kReplaysPerClockRead records: only the horizon check uses it, and a few
  // milliseconds do not matter there (a stale `now` checks more strictly).
  constexpr uint32_t kReplaysPerClockRead = 1024;
  if (replays_since_clock_read_++ % kReplaysPerClockRead == 0) replay_now_ = clock_.Now();
  const absl::Time now = replay_now_;
  switch (record.change_case()) {
    case store::v1::LogRecord::kPut: {
      const store::v1::TaskPut& put = record.put();
      if (put.task_id().empty() || put.queue().empty() || !ValidState(put.state().state())) {
        return absl::InvalidArgumentError(
            absl::StrCat("TaskPut without task_id or queue, or with state ", put.state().state()));
      }
      if (put.task_id().size() > kMaxTaskIdBytes || put.payload().size() > kMaxPayloadBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("TaskPut with a task_id of ", put.task_id().size(),
                         " bytes or a payload of ", put.payload().size(), " bytes (at most ",
                         kMaxTaskIdBytes, " and ", kMaxPayloadBytes, ")"));
      }
      if (absl::Status s = CheckTimerWithinHorizon(put.state(), now, options_.retention); !s.ok()) {
        return s;
      }
      // A newer incarnation of the id (a fuzzy snapshot's) is replaced: later records rebuild it.
      if (Record* old = FindLocked(put.task_id()); old != nullptr) EraseLocked(old);
      if (put.has_target() &&
          put.target().kind() != static_cast<int32_t>(PushTarget::Kind::kHttp) &&
          put.target().kind() != static_cast<int32_t>(PushTarget::Kind::kGrpc)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "TaskPut of \"", put.task_id(), "\" with target kind ", put.target().kind()));
      }
      const auto state = static_cast<TaskState>(put.state().state());
      // A payload that the task's state no longer keeps is not stored at all.
      const absl::string_view payload =
          KeepsPayload(state) ? absl::string_view(put.payload()) : absl::string_view();
      Record* r = NewRecordLocked(put.queue(), put.task_id(), payload);
      r->create_ns = put.create_time_unix_nanos();
      r->due_ns = put.first_due_time_unix_nanos();
      RetryPolicy policy;
      policy.max_attempts = put.max_attempts();
      policy.min_backoff = absl::Nanoseconds(put.min_backoff_nanos());
      policy.max_backoff = absl::Nanoseconds(put.max_backoff_nanos());
      if (put.headers_size() > 0 || put.has_target() || !IsDefault(policy)) {
        Cold& cold = ColdLocked(r);
        for (const store::v1::Header& header : put.headers()) {
          cold.headers.emplace_back(header.key(), header.value());
        }
        if (put.has_target()) {
          cold.target = std::make_unique<PushTarget>(TargetFromProto(put.target()));
          r->flags |= Record::kPush;
        }
        if (!IsDefault(policy)) cold.retry_policy = std::make_unique<RetryPolicy>(policy);
      }
      // Size and fingerprint are kept exactly as logged (the payload may be gone, or the
      // fingerprint of another version's making).
      if (put.payload_size_bytes() != static_cast<int64_t>(payload.size())) {
        ColdLocked(r).payload_size_bytes = put.payload_size_bytes();
      }
      r->put_lsn_or_fingerprint = put.payload_fingerprint();
      r->flags |= Record::kLoggedFingerprint;
      ApplyUpdateLocked(r, put.state());
      return absl::OkStatus();
    }
    case store::v1::LogRecord::kUpdate: {
      const store::v1::TaskUpdate& update = record.update();
      if (!ValidState(update.state())) {
        return absl::InvalidArgumentError(
            absl::StrCat("TaskUpdate of \"", update.task_id(), "\" with state ", update.state()));
      }
      if (absl::Status s = CheckTimerWithinHorizon(update, now, options_.retention); !s.ok()) {
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
  for (Record* r : slots_) {
    if (r == nullptr) continue;
    // READY is not logged: a READY task is a SCHEDULED one whose due time has passed.
    if (r->state() == TaskState::kReady) SetStateLocked(r, TaskState::kScheduled);
    ArmForStateLocked(r);
  }
}

bool TaskStore::SnapshotChunk(size_t* cursor, size_t max_tasks,
                              std::vector<store::v1::LogRecord>* out) {
  absl::MutexLock lock(&mu_);
  size_t taken = 0;
  max_tasks = std::max<size_t>(max_tasks, 1);
  while (*cursor < slots_.size() && taken < max_tasks) {
    const Record* r = slots_[(*cursor)++];
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

size_t TaskStore::ColdPartsForTest() const {
  absl::MutexLock lock(&mu_);
  return cold_.size();
}

size_t TaskStore::IndexCapacityForTest() const {
  absl::MutexLock lock(&mu_);
  return by_id_.capacity();
}

}  // namespace hourglass

// ThreadSanitizer support for Debian's Abseil (linked into every executable of a
// HOURGLASS_SANITIZE=thread build, see tests/sanitizers/CMakeLists.txt).
//
// Debian's libabsl_synchronization is not built with -fsanitize=thread, so its annotations for
// TSan (ABSL_TSAN_MUTEX_*) are compiled out: TSan sees none of the happens-before edges that an
// absl::Mutex, CondVar, Notification or BlockingCounter creates, and reports every access to
// ABSL_GUARDED_BY data as a race. This file defines the out-of-line members of those classes in
// the executable, which takes precedence over the shared library for every caller (our code,
// and Debian's gRPC and Abseil, which call them through the PLT); each one tells TSan what it
// does with the public annotations of <sanitizer/tsan_interface.h>, exactly where Abseil's own
// TSan build does (absl/synchronization/mutex.cc), and calls the real member, found with
// dlsym(RTLD_NEXT, <mangled name>).
//
// Conditions: Abseil evaluates a waiter's Condition inside a lock or unlock operation, possibly
// on the unlocking thread. Condition::Eval is interposed too and, like Abseil's
// EvalConditionAnnotated, presents the evaluation to TSan as running with the mutex held.
//
// tsan_absl_check (tests/sanitizers) proves both directions: correct absl::Mutex-guarded code
// is reported clean, and an access outside the mutex is still reported.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

// TSan's dynamic annotations (exported by its runtime; not in <sanitizer/tsan_interface.h>).
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);

namespace {

#define HOURGLASS_STRINGIFY_INNER(x) #x
#define HOURGLASS_STRINGIFY(x) HOURGLASS_STRINGIFY_INNER(x)

// The real member `absl::<inline namespace>::<suffix>` (an Itanium-mangled name without the
// "_ZN4absl<namespace>" or "_ZNK4absl<namespace>" head); aborts when the library lacks it.
void* RealSymbol(const char* head, const char* suffix) {
  const char* inline_namespace = HOURGLASS_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  std::string name = std::string(head) + "4absl" + std::to_string(std::strlen(inline_namespace)) +
                     inline_namespace + suffix;
  void* symbol = dlsym(RTLD_NEXT, name.c_str());
  if (symbol == nullptr) {
    std::fprintf(stderr, "tsan_absl: %s not found in the shared Abseil libraries\n", name.c_str());
    std::abort();
  }
  return symbol;
}

template <typename Function>
Function Real(const char* head, const char* suffix) {
  return reinterpret_cast<Function>(RealSymbol(head, suffix));
}

// What the calling thread is doing with which mutex, for Condition::Eval.
enum class Phase { kNone, kLocking, kUnlocking };
struct Operation {
  absl::Mutex* mu = nullptr;
  Phase phase = Phase::kNone;
  unsigned flags = 0;  // __tsan_mutex_read_lock for a reader
};
thread_local Operation current_operation;

// Sets current_operation for the scope of one real call (restoring the previous one).
class OperationScope {
 public:
  OperationScope(absl::Mutex* mu, Phase phase, unsigned flags) : saved_(current_operation) {
    current_operation = Operation{mu, phase, flags};
  }
  ~OperationScope() { current_operation = saved_; }

 private:
  Operation saved_;
};

// absl::Mutex's word: kMuWriter (8) is set while a writer holds it (absl/synchronization/mutex.cc).
unsigned HeldFlags(absl::Mutex* mu) {
  const auto* word = reinterpret_cast<const std::atomic<intptr_t>*>(mu);
  static_assert(sizeof(absl::Mutex) == sizeof(std::atomic<intptr_t>));
  return (word->load(std::memory_order_relaxed) & 8) != 0 ? 0u : __tsan_mutex_read_lock;
}

// A lock operation: `call` acquires `mu` (evaluating conditions as kLocking).
template <typename Call>
auto Locking(absl::Mutex* mu, unsigned flags, Call call) {
  __tsan_mutex_pre_lock(mu, flags);
  OperationScope scope(mu, Phase::kLocking, flags);
  auto result = call();
  __tsan_mutex_post_lock(mu, flags, 0);
  return result;
}

// An operation that releases the held `mu` and acquires it again (Await, CondVar::Wait).
template <typename Call>
auto Relocking(absl::Mutex* mu, Call call) {
  const unsigned flags = HeldFlags(mu);
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
  return Locking(mu, flags, call);
}

struct Unit {};

}  // namespace

// The analysis cannot follow these definitions: each is the lock operation it defines, carried
// out by the real member behind a function pointer.
namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5Mutex4LockEv");
  Locking(this, 0, [&] {
    real(this);
    return Unit{};
  });
}

void Mutex::ReaderLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5Mutex10ReaderLockEv");
  Locking(this, __tsan_mutex_read_lock, [&] {
    real(this);
    return Unit{};
  });
}

bool Mutex::TryLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<bool (*)(Mutex*)>("_ZN", "5Mutex7TryLockEv");
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed),
                         0);
  return locked;
}

bool Mutex::ReaderTryLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<bool (*)(Mutex*)>("_ZN", "5Mutex13ReaderTryLockEv");
  const unsigned flags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(this, flags);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, flags | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  return locked;
}

void Mutex::Unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5Mutex6UnlockEv");
  __tsan_mutex_pre_unlock(this, 0);
  {
    OperationScope scope(this, Phase::kUnlocking, 0);
    real(this);
  }
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5Mutex12ReaderUnlockEv");
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  {
    OperationScope scope(this, Phase::kUnlocking, __tsan_mutex_read_lock);
    real(this);
  }
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

void Mutex::LockWhen(const Condition& cond) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>("_ZN", "5Mutex8LockWhenERKNS0_9ConditionE");
  Locking(this, 0, [&] {
    real(this, cond);
    return Unit{};
  });
}

void Mutex::ReaderLockWhen(const Condition& cond) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>("_ZN", "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Locking(this, __tsan_mutex_read_lock, [&] {
    real(this, cond);
    return Unit{};
  });
}

bool Mutex::LockWhenWithTimeout(const Condition& cond,
                                Duration timeout) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "_ZN", "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Locking(this, 0, [&] { return real(this, cond, timeout); });
}

bool Mutex::LockWhenWithDeadline(const Condition& cond,
                                 Time deadline) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      "_ZN", "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Locking(this, 0, [&] { return real(this, cond, deadline); });
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond,
                                      Duration timeout) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "_ZN", "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Locking(this, __tsan_mutex_read_lock, [&] { return real(this, cond, timeout); });
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond,
                                       Time deadline) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      "_ZN", "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Locking(this, __tsan_mutex_read_lock, [&] { return real(this, cond, deadline); });
}

void Mutex::Await(const Condition& cond) {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>("_ZN", "5Mutex5AwaitERKNS0_9ConditionE");
  Relocking(this, [&] {
    real(this, cond);
    return Unit{};
  });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "_ZN", "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return Relocking(this, [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Time)>(
      "_ZN", "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return Relocking(this, [&] { return real(this, cond, deadline); });
}

Mutex::~Mutex() {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5MutexD2Ev");
  real(this);
  __tsan_mutex_destroy(this, 0);
}

// Like EvalConditionAnnotated in absl/synchronization/mutex.cc: the predicate reads data guarded
// by the mutex, so it runs, for TSan, with the mutex held, whether the evaluating thread is in
// the middle of acquiring it or of releasing it (then for a waiter).
bool Condition::Eval() const {
  static const auto real = Real<bool (*)(const Condition*)>("_ZNK", "9Condition4EvalEv");
  const Operation operation = current_operation;
  if (operation.phase == Phase::kNone) return real(this);
  // The Condition object is the waiter's, on its stack, and may be evaluated on the unlocking
  // thread: Abseil hands it over inside the library, unseen by TSan. The predicate runs on a
  // copy read with TSan's reads ignored (the copy refers to the same predicate and arguments).
  alignas(Condition) unsigned char copy[sizeof(Condition)];
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  std::memcpy(copy, static_cast<const void*>(this), sizeof(Condition));
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  const auto* condition = reinterpret_cast<const Condition*>(copy);
  absl::Mutex* mu = operation.mu;
  const unsigned flags = operation.flags;
  bool result;
  if (operation.phase == Phase::kLocking) {
    __tsan_mutex_post_lock(mu, flags, 0);
    result = real(condition);
    __tsan_mutex_pre_unlock(mu, flags);
    __tsan_mutex_post_unlock(mu, flags);
    __tsan_mutex_pre_lock(mu, flags);
  } else {
    __tsan_mutex_post_unlock(mu, flags);
    __tsan_mutex_pre_lock(mu, flags);
    __tsan_mutex_post_lock(mu, flags, 0);
    result = real(condition);
    __tsan_mutex_pre_unlock(mu, flags);
  }
  return result;
}

void CondVar::Wait(Mutex* mu) {
  static const auto real = Real<void (*)(CondVar*, Mutex*)>("_ZN", "7CondVar4WaitEPNS0_5MutexE");
  Relocking(mu, [&] {
    real(this, mu);
    return Unit{};
  });
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, Duration)>(
      "_ZN", "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  return Relocking(mu, [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, Time)>(
      "_ZN", "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  return Relocking(mu, [&] { return real(this, mu, deadline); });
}

// Notification and BlockingCounter hand over through an atomic inside the library (the waiter
// may never touch the mutex): a release on the object, and on the flag that the inline
// HasBeenNotified() reads, before the real Notify; an acquire after the real wait.
namespace {
struct NotificationLayout {
  Mutex mutex;
  std::atomic<bool> notified_yet;
};
static_assert(sizeof(NotificationLayout) == sizeof(Notification));
void* NotifiedYet(const Notification* notification) {
  return const_cast<std::atomic<bool>*>(
      &reinterpret_cast<const NotificationLayout*>(notification)->notified_yet);
}
}  // namespace

void Notification::Notify() {
  static const auto real = Real<void (*)(Notification*)>("_ZN", "12Notification6NotifyEv");
  __tsan_release(this);
  __tsan_release(NotifiedYet(this));
  real(this);
}

void Notification::WaitForNotification() const {
  static const auto real =
      Real<void (*)(const Notification*)>("_ZNK", "12Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static const auto real = Real<bool (*)(const Notification*, Duration)>(
      "_ZNK", "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static const auto real = Real<bool (*)(const Notification*, Time)>(
      "_ZNK", "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool BlockingCounter::DecrementCount() {
  static const auto real =
      Real<bool (*)(BlockingCounter*)>("_ZN", "15BlockingCounter14DecrementCountEv");
  __tsan_release(this);
  return real(this);
}

void BlockingCounter::Wait() {
  static const auto real = Real<void (*)(BlockingCounter*)>("_ZN", "15BlockingCounter4WaitEv");
  real(this);
  __tsan_acquire(this);
}

ABSL_NAMESPACE_END
}  // namespace absl

// TimingWheel: a hierarchical timing wheel (6 levels x 64 slots, 1 ms tick), in the style of the
// Linux (>= 4.8) and Tokio wheels. Pure data: no thread, no clock; `now` is always an argument,
// in milliseconds of monotonic time.
//
//   TimingWheel wheel(/*now_ms=*/0);
//   TimerEntry entry;                       // embedded in the caller's record (intrusive)
//   wheel.Insert(&entry, /*deadline_ms=*/1500, /*cookie=*/42);
//   std::vector<uint64_t> fired;
//   wheel.Advance(/*now_ms=*/2000, &fired);  // fired == {42}
//
// Level L has slots of 64^L ms; the wheel covers kHorizonMs = 2^36 ms (about 2.2 years) ahead of
// its current time. Insert and Remove are O(1). An entry moves down a level at most 5 times
// (cascading), and fires exactly at its deadline's tick: never early.
//
// Not thread-safe: the owner (Ticker) guards it with its mutex.
#ifndef HOURGLASS_WHEEL_TIMING_WHEEL_H_
#define HOURGLASS_WHEEL_TIMING_WHEEL_H_

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace hourglass {

// One timer, embedded in the record it belongs to. The wheel links it into a slot's intrusive
// doubly-linked list; the owner must Remove() it (or let it fire) before destroying it.
struct TimerEntry {
  TimerEntry() = default;
  TimerEntry(const TimerEntry&) = delete;
  TimerEntry& operator=(const TimerEntry&) = delete;

  bool linked() const { return prev != nullptr; }

  // Managed by the wheel; read-only for everybody else.
  TimerEntry* prev = nullptr;
  TimerEntry* next = nullptr;
  uint64_t deadline_ms = 0;  // absolute, monotonic
  uint64_t cookie = 0;       // handed back when the timer fires
  uint8_t level = 0;
  uint8_t slot = 0;
};

class TimingWheel {
 public:
  static constexpr int kLevels = 6;
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;
  static constexpr uint64_t kHorizonMs = uint64_t{1} << (kLevels * kSlotBits);

  // Starts the wheel's clock at `now_ms`.
  explicit TimingWheel(uint64_t now_ms);
  ~TimingWheel();  // unlinks whatever is still in the wheel
  TimingWheel(const TimingWheel&) = delete;
  TimingWheel& operator=(const TimingWheel&) = delete;

  // Links `entry` (which must not be linked) to fire at `deadline_ms` with `cookie`. A deadline at
  // or before the wheel's current time fires on the next Advance. Returns InvalidArgument, and
  // leaves the entry unlinked, when deadline_ms >= now_ms() + kHorizonMs: never clamped or wrapped.
  absl::Status Insert(TimerEntry* entry, uint64_t deadline_ms, uint64_t cookie);

  // Unlinks `entry`; a no-op when it is not linked. O(1).
  void Remove(TimerEntry* entry);

  // The earliest time at which Advance() has work to do (a deadline or a cascade), never later
  // than the earliest deadline in the wheel (for an entry inserted already overdue: now_ms(), when
  // it is due); nullopt when the wheel is empty. O(levels).
  std::optional<uint64_t> NextExpiration() const;

  // Moves the wheel's time to `now_ms` (which must not go backwards), cascading entries down
  // levels as their slots come up, and appends the cookie of every entry whose deadline is
  // <= now_ms to `fired`, in deadline order, unlinking them. After a long gap (oversleep) every
  // elapsed slot is drained in this one call.
  void Advance(uint64_t now_ms, std::vector<uint64_t>* fired);

  uint64_t now_ms() const { return elapsed_ms_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct Slot {
    TimerEntry head;  // sentinel of a circular list
  };
  struct Level {
    uint64_t occupied = 0;  // bit s set <=> slots[s] is non-empty
    std::array<Slot, kSlots> slots;
  };

  // Where Advance() has work next: the slot `slot` of level `level`, which comes up at
  // `start_ms` (a deadline at level 0, a cascade point above).
  struct Expiration {
    uint64_t start_ms;
    int level;
    int slot;
  };

  // Places a (not linked) entry by its deadline relative to elapsed_ms_; size_ is unchanged.
  void Link(TimerEntry* entry);
  std::optional<Expiration> NextExpirationInternal() const;
  // Empties a slot that has come up (elapsed_ms_ == its start): fires what is due, in deadline
  // order, and re-links the rest at lower levels.
  void ProcessSlot(int level_index, int slot_index, std::vector<uint64_t>* fired);

  uint64_t elapsed_ms_;
  size_t size_ = 0;
  // Level 0's current slot may hold entries inserted already overdue, with different deadlines.
  bool has_overdue_ = false;
  std::array<Level, kLevels> levels_;
};

}  // namespace hourglass

#endif  // HOURGLASS_WHEEL_TIMING_WHEEL_H_

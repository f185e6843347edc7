#include "wheel/timing_wheel.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

// How the wheel places an entry (the Tokio scheme): the level is given by the highest bit in which
// the entry's deadline differs from the wheel's time (elapsed_ms_), the slot by the deadline's
// bits at that level. Every entry at level L therefore shares all bits above level L with
// elapsed_ms_, and its slot's start time (those high bits, then the slot, then zeros) is <= its
// deadline (never early) and, for L > 0, after elapsed_ms_. When elapsed_ms_ reaches a slot's
// start time the slot is emptied: its entries fire, or move to a lower level relative to the new
// time (cascading). Between two slot start times the high bits of elapsed_ms_ cannot change under
// an entry, which is what keeps the placement valid as time moves on.
//
// Two exceptions to "the slot is after elapsed_ms_":
//  - Level 0's current slot holds the entries due now or in the past (inserted with
//    deadline <= elapsed_ms_): they fire on the next Advance().
//  - The top level can hold entries of the next 2^36 ms rotation: a deadline within the horizon
//    may cross a multiple of 2^36 and then differ from elapsed_ms_ above bit 35. Those sit in
//    slots at or behind the current top-level slot, and their start times are one full
//    rotation (2^36 ms) later. Level 0 and the middle levels never wrap.
// NextExpiration() handles both by searching level 0 from its current slot inclusive, and every
// other level from the slot after the current one, wrapping around to the current one last.

namespace hourglass {
namespace {

constexpr uint64_t kSlotMask = TimingWheel::kSlots - 1;

// A broken caller contract on an intrusive list would corrupt memory later; stop here instead.
[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "hourglass::TimingWheel: %s\n", what);
  std::abort();
}

// The level at which an entry due at `deadline_ms` goes, with the wheel at `elapsed_ms`.
int LevelFor(uint64_t elapsed_ms, uint64_t deadline_ms) {
  // The `| kSlotMask` keeps equal (and past) deadlines at level 0 and keeps the argument of
  // countl_zero non-zero.
  const uint64_t masked = (elapsed_ms ^ deadline_ms) | kSlotMask;
  const int significant_bit = 63 - std::countl_zero(masked);
  // Within the horizon, a deadline that differs above bit 35 is in the top level's next rotation.
  return std::min(significant_bit / TimingWheel::kSlotBits, TimingWheel::kLevels - 1);
}

uint64_t SlotRangeMs(int level) { return uint64_t{1} << (TimingWheel::kSlotBits * level); }

void InitSentinel(TimerEntry* head) {
  head->prev = head;
  head->next = head;
}

// Appends `entry` at the tail of the circular list whose sentinel is `head`.
void PushBack(TimerEntry* head, TimerEntry* entry) {
  entry->prev = head->prev;
  entry->next = head;
  head->prev->next = entry;
  head->prev = entry;
}

void Unlink(TimerEntry* entry) {
  entry->prev->next = entry->next;
  entry->next->prev = entry->prev;
  entry->prev = nullptr;
  entry->next = nullptr;
}

}  // namespace

TimingWheel::TimingWheel(uint64_t now_ms) : elapsed_ms_(now_ms) {
  for (Level& level : levels_) {
    for (Slot& slot : level.slots) InitSentinel(&slot.head);
  }
}

TimingWheel::~TimingWheel() {
  for (Level& level : levels_) {
    while (level.occupied != 0) {
      const int s = std::countr_zero(level.occupied);
      TimerEntry* head = &level.slots[s].head;
      while (head->next != head) Unlink(head->next);
      level.occupied &= ~(uint64_t{1} << s);
    }
  }
}

absl::Status TimingWheel::Insert(TimerEntry* entry, uint64_t deadline_ms, uint64_t cookie) {
  if (entry->linked()) Die("Insert() of an entry that is already linked; Remove() it first");
  // Written as a difference so that it cannot overflow.
  if (deadline_ms > elapsed_ms_ && deadline_ms - elapsed_ms_ >= kHorizonMs) {
    return absl::InvalidArgumentError(
        absl::StrCat("deadline ", deadline_ms, " ms is beyond the wheel's horizon of ", kHorizonMs,
                     " ms (the wheel is at ", elapsed_ms_, " ms)"));
  }
  entry->deadline_ms = deadline_ms;
  entry->cookie = cookie;
  Link(entry);
  ++size_;
  return absl::OkStatus();
}

void TimingWheel::Link(TimerEntry* entry) {
  // A deadline at or before elapsed_ms_ goes into level 0's current slot: the slot of
  // elapsed_ms_, whose start time is elapsed_ms_ itself, so NextExpiration() reports it at once.
  const uint64_t slot_of = std::max(entry->deadline_ms, elapsed_ms_);
  const int level = LevelFor(elapsed_ms_, slot_of);
  const int slot = static_cast<int>((slot_of >> (kSlotBits * level)) & kSlotMask);
  if (entry->deadline_ms < elapsed_ms_) has_overdue_ = true;
  entry->level = static_cast<uint8_t>(level);
  entry->slot = static_cast<uint8_t>(slot);
  PushBack(&levels_[level].slots[slot].head, entry);
  levels_[level].occupied |= uint64_t{1} << slot;
}

void TimingWheel::Remove(TimerEntry* entry) {
  if (!entry->linked()) return;
  Level& level = levels_[entry->level];
  TimerEntry* head = &level.slots[entry->slot].head;
  Unlink(entry);
  if (head->next == head) level.occupied &= ~(uint64_t{1} << entry->slot);
  --size_;
}

std::optional<TimingWheel::Expiration> TimingWheel::NextExpirationInternal() const {
  std::optional<Expiration> best;
  for (int level = 0; level < kLevels; ++level) {
    const uint64_t occupied = levels_[level].occupied;
    if (occupied == 0) continue;
    const uint64_t range_ms = SlotRangeMs(level);
    const int current = static_cast<int>((elapsed_ms_ >> (kSlotBits * level)) & kSlotMask);
    // Level 0 searches from its current slot (entries due now); the other levels from the next
    // one, so that their current slot, which only the top level can occupy (next rotation), comes
    // last. `distance` is how many slots ahead of the current one the occupied slot is.
    const int first = level == 0 ? 0 : 1;
    const int distance = first + std::countr_zero(std::rotr(occupied, (current + first) % kSlots));
    const uint64_t current_start_ms = elapsed_ms_ & ~(range_ms - 1);
    const uint64_t start_ms = current_start_ms + static_cast<uint64_t>(distance) * range_ms;
    if (!best.has_value() || start_ms < best->start_ms) {
      best = Expiration{start_ms, level, (current + distance) % kSlots};
    }
  }
  return best;
}

std::optional<uint64_t> TimingWheel::NextExpiration() const {
  const std::optional<Expiration> next = NextExpirationInternal();
  if (!next.has_value()) return std::nullopt;
  return next->start_ms;
}

void TimingWheel::Advance(uint64_t now_ms, std::vector<uint64_t>* fired) {
  // Time never goes backwards; an earlier `now_ms` is taken as "no time has passed" (which still
  // fires what is due at the current time).
  now_ms = std::max(now_ms, elapsed_ms_);
  for (std::optional<Expiration> next = NextExpirationInternal();
       next.has_value() && next->start_ms <= now_ms; next = NextExpirationInternal()) {
    elapsed_ms_ = next->start_ms;
    ProcessSlot(next->level, next->slot, fired);
  }
  elapsed_ms_ = now_ms;
}

void TimingWheel::ProcessSlot(int level_index, int slot_index, std::vector<uint64_t>* fired) {
  Level& level = levels_[level_index];
  TimerEntry* head = &level.slots[slot_index].head;

  // Splice the whole slot onto a local list first: re-linking an entry must never see it.
  TimerEntry pending;
  pending.next = head->next;
  pending.prev = head->prev;
  pending.next->prev = &pending;
  pending.prev->next = &pending;
  InitSentinel(head);
  level.occupied &= ~(uint64_t{1} << slot_index);

  // Everything due here has a deadline <= elapsed_ms_, and everything left in the wheel a later
  // one, so firing this slot's due entries in deadline order keeps the whole Advance() in order.
  // A slot holds one deadline, except level 0's current slot when entries were inserted already
  // overdue: sort in that rare case only.
  if (level_index == 0 && has_overdue_) {
    has_overdue_ = false;
    std::vector<TimerEntry*> due;
    for (TimerEntry* e = pending.next; e != &pending; e = e->next) {
      if (e->deadline_ms <= elapsed_ms_) due.push_back(e);
    }
    std::stable_sort(due.begin(), due.end(), [](const TimerEntry* a, const TimerEntry* b) {
      return a->deadline_ms < b->deadline_ms;
    });
    for (TimerEntry* e : due) {
      Unlink(e);
      fired->push_back(e->cookie);
      --size_;
    }
  }

  while (pending.next != &pending) {
    TimerEntry* e = pending.next;
    Unlink(e);
    if (e->deadline_ms <= elapsed_ms_) {
      fired->push_back(e->cookie);
      --size_;
    } else {
      Link(e);  // cascade: a strictly lower level, relative to the new elapsed_ms_
    }
  }
}

}  // namespace hourglass

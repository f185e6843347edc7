#include "wheel/timing_wheel.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hourglass {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint64_t kHorizonMs = TimingWheel::kHorizonMs;

// 64^k: the slot size of level k, and the span of level k-1.
constexpr uint64_t Pow64(int k) { return uint64_t{1} << (6 * k); }

std::vector<uint64_t> AdvanceTo(TimingWheel& wheel, uint64_t now_ms) {
  std::vector<uint64_t> fired;
  wheel.Advance(now_ms, &fired);
  return fired;
}

// Wheel start times that are aligned to, just before and just after every level's boundaries,
// plus unaligned ones, including starts close to a top-level rotation (2^36) so that deadlines
// within the horizon wrap into the top level's next rotation.
std::vector<uint64_t> StartTimes() {
  std::vector<uint64_t> starts = {0, 1, 5, 37, 1'000'000'007, 123'456'789'012};
  for (int k = 1; k <= 6; ++k) {
    starts.push_back(Pow64(k) - 1);
    starts.push_back(Pow64(k));
    starts.push_back(Pow64(k) + 1);
    starts.push_back(3 * Pow64(k) - 17);
  }
  starts.push_back(Pow64(6) - 12'345);
  starts.push_back(7 * Pow64(6) + 5 * Pow64(5) + 12'345);
  return starts;
}

// Deadlines for a wheel started at `start`: relative offsets at every level boundary (63, 64,
// 65, 4095, 4096, ..., 2^36-1) and the absolute next boundaries of every level around `start`
// (where the bits that choose the level change), all within the horizon.
std::vector<uint64_t> BoundaryDeadlines(uint64_t start) {
  std::vector<uint64_t> deadlines = {start, start + 1};
  for (int k = 1; k <= 6; ++k) {
    for (uint64_t offset : {Pow64(k) - 1, Pow64(k), Pow64(k) + 1})
      deadlines.push_back(start + offset);
    const uint64_t next_boundary = ((start >> (6 * k)) + 1) << (6 * k);
    for (uint64_t boundary : {next_boundary - 1, next_boundary, next_boundary + 1}) {
      deadlines.push_back(boundary);
    }
  }
  deadlines.push_back(start + (uint64_t{1} << 30));
  deadlines.push_back(start + kHorizonMs - 1);
  std::erase_if(deadlines, [&](uint64_t d) { return d < start || d - start >= kHorizonMs; });
  std::sort(deadlines.begin(), deadlines.end());
  deadlines.erase(std::unique(deadlines.begin(), deadlines.end()), deadlines.end());
  return deadlines;
}

// An empty wheel has nothing to do: no expiration, size 0.
TEST(TimingWheelTest, EmptyWheelHasNoExpiration) {
  TimingWheel wheel(1234);
  EXPECT_EQ(wheel.NextExpiration(), std::nullopt);
  EXPECT_EQ(wheel.size(), 0u);
  EXPECT_TRUE(wheel.empty());
  EXPECT_EQ(wheel.now_ms(), 1234u);
  EXPECT_THAT(AdvanceTo(wheel, 99'999), IsEmpty());
  EXPECT_EQ(wheel.now_ms(), 99'999u);
}

// The example of the header: a timer fires in the Advance that reaches its deadline, not before.
TEST(TimingWheelTest, NeverFiresBeforeDeadline) {
  TimingWheel wheel(0);
  TimerEntry entry;
  ASSERT_TRUE(wheel.Insert(&entry, 1500, 42).ok());
  EXPECT_TRUE(entry.linked());
  EXPECT_THAT(AdvanceTo(wheel, 1499), IsEmpty());
  EXPECT_TRUE(entry.linked());
  EXPECT_THAT(AdvanceTo(wheel, 1500), ElementsAre(42u));
  EXPECT_FALSE(entry.linked());
  EXPECT_TRUE(wheel.empty());
}

// A deadline at level 0 is reported exactly; at a level > 0, the cascade point is the slot start.
TEST(TimingWheelTest, NextExpirationIsDeadlineOrCascadePoint) {
  TimingWheel wheel(10);
  TimerEntry at_level0, at_level1, at_level2;
  ASSERT_TRUE(wheel.Insert(&at_level2, 4096 + 77, 3).ok());
  EXPECT_EQ(wheel.NextExpiration(), 4096u);  // level 2, slot 1
  ASSERT_TRUE(wheel.Insert(&at_level1, 64, 2).ok());
  EXPECT_EQ(wheel.NextExpiration(), 64u);  // level 1, slot 1: cascade point == deadline
  ASSERT_TRUE(wheel.Insert(&at_level0, 63, 1).ok());
  EXPECT_EQ(wheel.NextExpiration(), 63u);  // level 0, slot 63
  EXPECT_THAT(AdvanceTo(wheel, 63), ElementsAre(1u));
  EXPECT_EQ(wheel.NextExpiration(), 64u);
  EXPECT_THAT(AdvanceTo(wheel, 64), ElementsAre(2u));
  EXPECT_EQ(wheel.NextExpiration(), 4096u);
  EXPECT_THAT(AdvanceTo(wheel, 4096), IsEmpty());  // cascade to level 1 (slot of 4160)
  EXPECT_EQ(wheel.NextExpiration(), 4096u + 64);
  EXPECT_THAT(AdvanceTo(wheel, 4096 + 64), IsEmpty());  // cascade to level 0
  EXPECT_EQ(wheel.NextExpiration(), 4096u + 77);
  EXPECT_THAT(AdvanceTo(wheel, 4096 + 77), ElementsAre(3u));
  EXPECT_EQ(wheel.NextExpiration(), std::nullopt);
}

// A cascade whose entry is due exactly at the cascade point fires right there.
TEST(TimingWheelTest, CascadeLandingExactlyAtElapsedFires) {
  for (int k = 1; k < TimingWheel::kLevels; ++k) {
    SCOPED_TRACE(absl::StrCat("deadline 64^", k));
    TimingWheel wheel(0);
    TimerEntry entry;
    ASSERT_TRUE(wheel.Insert(&entry, Pow64(k), 9).ok());
    EXPECT_EQ(wheel.NextExpiration(), Pow64(k));
    EXPECT_THAT(AdvanceTo(wheel, Pow64(k) - 1), IsEmpty());
    EXPECT_THAT(AdvanceTo(wheel, Pow64(k)), ElementsAre(9u));
  }
}

// Stepping from one NextExpiration() to the next, a timer at any level boundary, from any start,
// is never reported later than its deadline, never fires early, fires exactly at its deadline,
// and is handled in at most 6 stops (at most 5 cascades, then the fire).
TEST(TimingWheelTest, LevelBoundariesStepwise) {
  for (uint64_t start : StartTimes()) {
    for (uint64_t deadline : BoundaryDeadlines(start)) {
      SCOPED_TRACE(absl::StrCat("start ", start, " deadline ", deadline));
      TimingWheel wheel(start);
      TimerEntry entry;
      ASSERT_TRUE(wheel.Insert(&entry, deadline, 7).ok());
      std::optional<uint64_t> previous_stop;
      for (int stops = 1;; ++stops) {
        ASSERT_LE(stops, TimingWheel::kLevels);
        const std::optional<uint64_t> next = wheel.NextExpiration();
        ASSERT_TRUE(next.has_value());
        ASSERT_LE(*next, deadline);
        ASSERT_GE(*next, start);
        if (previous_stop.has_value()) {
          ASSERT_GT(*next, *previous_stop);
        }
        previous_stop = next;
        const std::vector<uint64_t> fired = AdvanceTo(wheel, *next);
        if (*next < deadline) {
          ASSERT_THAT(fired, IsEmpty());
          ASSERT_TRUE(entry.linked());
        } else {
          ASSERT_THAT(fired, ElementsAre(7u));
          break;
        }
      }
      EXPECT_FALSE(entry.linked());
      EXPECT_EQ(wheel.NextExpiration(), std::nullopt);
    }
  }
}

// Jumping straight to 1 ms before a boundary deadline fires nothing; the next ms fires it.
TEST(TimingWheelTest, LevelBoundariesJump) {
  for (uint64_t start : StartTimes()) {
    for (uint64_t deadline : BoundaryDeadlines(start)) {
      SCOPED_TRACE(absl::StrCat("start ", start, " deadline ", deadline));
      TimingWheel wheel(start);
      TimerEntry entry;
      ASSERT_TRUE(wheel.Insert(&entry, deadline, 7).ok());
      if (deadline > start) {
        ASSERT_THAT(AdvanceTo(wheel, deadline - 1), IsEmpty());
      }
      ASSERT_LE(wheel.NextExpiration().value(), deadline);
      ASSERT_THAT(AdvanceTo(wheel, deadline), ElementsAre(7u));
    }
  }
}

// All the boundary deadlines of a start in one wheel fire each at its own deadline, in order.
TEST(TimingWheelTest, LevelBoundariesTogether) {
  for (uint64_t start : StartTimes()) {
    SCOPED_TRACE(absl::StrCat("start ", start));
    const std::vector<uint64_t> deadlines = BoundaryDeadlines(start);
    TimingWheel wheel(start);
    std::vector<TimerEntry> entries(deadlines.size());
    for (size_t i = 0; i < deadlines.size(); ++i) {
      ASSERT_TRUE(wheel.Insert(&entries[i], deadlines[i], i).ok());
    }
    for (size_t i = 0; i < deadlines.size(); ++i) {
      if (deadlines[i] > wheel.now_ms()) {
        ASSERT_THAT(AdvanceTo(wheel, deadlines[i] - 1), IsEmpty());
      }
      ASSERT_THAT(AdvanceTo(wheel, deadlines[i]), ElementsAre(i));
    }
    EXPECT_TRUE(wheel.empty());
  }
}

// Deadlines in the top level's next rotation (crossing a multiple of 2^36) come after the ones in
// the current rotation, although their slots are at or behind the current top-level slot.
TEST(TimingWheelTest, TopLevelWrapsIntoNextRotation) {
  const uint64_t start = 5 * Pow64(5) + 12'345;  // top-level slot 5
  TimingWheel wheel(start);
  TimerEntry same_slot_next_rotation, ahead, behind_next_rotation;
  // Slot 5 of the next rotation: the current slot number, one rotation later.
  ASSERT_TRUE(wheel.Insert(&same_slot_next_rotation, start + kHorizonMs - 1, 1).ok());
  // Slot 3 of the next rotation: behind the current slot.
  ASSERT_TRUE(wheel.Insert(&behind_next_rotation, start + kHorizonMs - 2 * Pow64(5), 2).ok());
  // Slot 7 of this rotation: ahead.
  ASSERT_TRUE(wheel.Insert(&ahead, start + 2 * Pow64(5), 3).ok());
  EXPECT_EQ(wheel.NextExpiration(), 7 * Pow64(5));
  std::vector<uint64_t> fired;
  wheel.Advance(start + 2 * Pow64(5), &fired);
  wheel.Advance(start + kHorizonMs - 2 * Pow64(5) - 1, &fired);
  EXPECT_THAT(fired, ElementsAre(3u));
  wheel.Advance(start + kHorizonMs - 2 * Pow64(5), &fired);
  wheel.Advance(start + kHorizonMs - 2, &fired);
  EXPECT_THAT(fired, ElementsAre(3u, 2u));
  wheel.Advance(start + kHorizonMs - 1, &fired);
  EXPECT_THAT(fired, ElementsAre(3u, 2u, 1u));
}

// The horizon is a hard limit: rejected (not clamped) at exactly kHorizonMs ahead, with a
// message naming both numbers, leaving the entry unlinked; accepted at kHorizonMs - 1 and fired
// exactly then.
TEST(TimingWheelTest, HorizonRejectedNotClamped) {
  for (uint64_t start : {uint64_t{0}, uint64_t{12'345}, Pow64(6) - 7, 3 * Pow64(6)}) {
    SCOPED_TRACE(absl::StrCat("start ", start));
    TimingWheel wheel(start);
    TimerEntry too_far, farthest;
    const absl::Status rejected = wheel.Insert(&too_far, start + kHorizonMs, 1);
    EXPECT_EQ(rejected.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(rejected.message(),
              absl::StrCat("deadline ", start + kHorizonMs,
                           " ms is beyond the wheel's horizon of 68719476736 ms "
                           "(the wheel is at ",
                           start, " ms)"));
    EXPECT_FALSE(too_far.linked());
    EXPECT_EQ(wheel.Insert(&too_far, UINT64_MAX, 1).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(too_far.linked());
    EXPECT_EQ(wheel.size(), 0u);
    EXPECT_EQ(wheel.NextExpiration(), std::nullopt);

    ASSERT_TRUE(wheel.Insert(&farthest, start + kHorizonMs - 1, 2).ok());
    EXPECT_EQ(wheel.size(), 1u);
    EXPECT_THAT(AdvanceTo(wheel, start + kHorizonMs - 2), IsEmpty());
    EXPECT_THAT(AdvanceTo(wheel, start + kHorizonMs - 1), ElementsAre(2u));
  }
}

// The horizon moves with the wheel's time.
TEST(TimingWheelTest, HorizonIsRelativeToWheelTime) {
  TimingWheel wheel(0);
  TimerEntry entry;
  EXPECT_FALSE(wheel.Insert(&entry, kHorizonMs + 1000, 1).ok());
  EXPECT_THAT(AdvanceTo(wheel, 1001), IsEmpty());
  ASSERT_TRUE(wheel.Insert(&entry, kHorizonMs + 1000, 1).ok());
  EXPECT_THAT(AdvanceTo(wheel, kHorizonMs + 1000), ElementsAre(1u));
}

// A deadline at or before the wheel's time fires on the next Advance, even one that does not move
// time, and overdue entries come out in deadline order.
TEST(TimingWheelTest, OverdueInsertFiresOnNextAdvanceInOrder) {
  TimingWheel wheel(0);
  EXPECT_THAT(AdvanceTo(wheel, 100'000), IsEmpty());
  TimerEntry a, b, c, d;
  ASSERT_TRUE(wheel.Insert(&a, 99'999, 1).ok());
  ASSERT_TRUE(wheel.Insert(&b, 5, 2).ok());
  ASSERT_TRUE(wheel.Insert(&c, 100'000, 3).ok());
  ASSERT_TRUE(wheel.Insert(&d, 100'001, 4).ok());
  // Never later than the wheel's time, which is when an overdue entry is due.
  EXPECT_EQ(wheel.NextExpiration(), 100'000u);
  EXPECT_THAT(AdvanceTo(wheel, 100'000), ElementsAre(2u, 1u, 3u));
  EXPECT_THAT(AdvanceTo(wheel, 100'001), ElementsAre(4u));
}

// An Advance to an earlier time does not move the wheel back and fires nothing early.
TEST(TimingWheelTest, AdvanceBackwardsDoesNotMoveTime) {
  TimingWheel wheel(500);
  TimerEntry entry;
  ASSERT_TRUE(wheel.Insert(&entry, 501, 1).ok());
  EXPECT_THAT(AdvanceTo(wheel, 10), IsEmpty());
  EXPECT_EQ(wheel.now_ms(), 500u);
  EXPECT_THAT(AdvanceTo(wheel, 501), ElementsAre(1u));
}

// A timer removed before its deadline never fires, and its slot's bit is cleared.
TEST(TimingWheelTest, CancelBeforeDue) {
  TimingWheel wheel(0);
  TimerEntry entry;
  ASSERT_TRUE(wheel.Insert(&entry, 1000, 1).ok());
  EXPECT_THAT(AdvanceTo(wheel, 500), IsEmpty());
  wheel.Remove(&entry);
  EXPECT_FALSE(entry.linked());
  EXPECT_EQ(wheel.size(), 0u);
  EXPECT_EQ(wheel.NextExpiration(), std::nullopt);
  EXPECT_THAT(AdvanceTo(wheel, 1'000'000), IsEmpty());
}

// A timer removed after it cascaded to a lower level (moved slot) never fires either.
TEST(TimingWheelTest, CancelAfterCascade) {
  TimingWheel wheel(0);
  TimerEntry entry;
  ASSERT_TRUE(wheel.Insert(&entry, 5000, 1).ok());
  EXPECT_EQ(entry.level, 2);
  EXPECT_THAT(AdvanceTo(wheel, 4096), IsEmpty());
  EXPECT_LT(entry.level, 2);
  wheel.Remove(&entry);
  EXPECT_EQ(wheel.NextExpiration(), std::nullopt);
  EXPECT_THAT(AdvanceTo(wheel, 10'000), IsEmpty());
}

// A timer removed 1 ms before its deadline, in the slot that comes up next, does not fire.
TEST(TimingWheelTest, CancelAtDue) {
  TimingWheel wheel(0);
  TimerEntry entry, other;
  ASSERT_TRUE(wheel.Insert(&entry, 1000, 1).ok());
  ASSERT_TRUE(wheel.Insert(&other, 1000, 2).ok());
  EXPECT_THAT(AdvanceTo(wheel, 999), IsEmpty());
  EXPECT_EQ(wheel.NextExpiration(), 1000u);
  wheel.Remove(&entry);
  EXPECT_EQ(wheel.NextExpiration(), 1000u);  // the slot still holds `other`
  EXPECT_THAT(AdvanceTo(wheel, 1000), ElementsAre(2u));
}

// Removing a timer that already fired, or was never inserted, is a no-op.
TEST(TimingWheelTest, CancelAfterFireIsNoOp) {
  TimingWheel wheel(0);
  TimerEntry fired_entry, pending, never_inserted;
  ASSERT_TRUE(wheel.Insert(&fired_entry, 10, 1).ok());
  ASSERT_TRUE(wheel.Insert(&pending, 20, 2).ok());
  EXPECT_THAT(AdvanceTo(wheel, 10), ElementsAre(1u));
  wheel.Remove(&fired_entry);
  wheel.Remove(&never_inserted);
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_THAT(AdvanceTo(wheel, 20), ElementsAre(2u));
}

// Removing entries one by one keeps the slot's bit while the slot is non-empty.
TEST(TimingWheelTest, RemoveClearsBitOnlyWhenSlotEmpties) {
  TimingWheel wheel(0);
  std::vector<TimerEntry> entries(3);
  for (auto& entry : entries) ASSERT_TRUE(wheel.Insert(&entry, 300'000, 1).ok());
  const std::optional<uint64_t> next = wheel.NextExpiration();
  ASSERT_TRUE(next.has_value());
  wheel.Remove(&entries[1]);
  EXPECT_EQ(wheel.NextExpiration(), next);
  wheel.Remove(&entries[0]);
  EXPECT_EQ(wheel.NextExpiration(), next);
  wheel.Remove(&entries[2]);
  EXPECT_EQ(wheel.NextExpiration(), std::nullopt);
}

// After a long gap (oversleep), one Advance of a year fires everything due, in deadline order.
TEST(TimingWheelTest, OversleepFiresAllInOrder) {
  constexpr uint64_t kYearMs = 365ull * 24 * 3600 * 1000;
  constexpr int kTimers = 20'000;
  const uint64_t start = 987'654'321;
  std::mt19937_64 rng(7);
  TimingWheel wheel(start);
  std::vector<TimerEntry> entries(kTimers);
  std::vector<std::pair<uint64_t, uint64_t>> expected;  // (deadline, cookie)
  for (int i = 0; i < kTimers; ++i) {
    const uint64_t deadline = start + 1 + rng() % kYearMs;
    ASSERT_TRUE(wheel.Insert(&entries[i], deadline, i).ok());
    expected.emplace_back(deadline, i);
  }
  std::vector<TimerEntry> late(2);  // beyond the year: still pending afterwards
  ASSERT_TRUE(wheel.Insert(&late[0], start + kYearMs + 1, kTimers).ok());
  ASSERT_TRUE(wheel.Insert(&late[1], start + kYearMs + 100'000, kTimers + 1).ok());

  const std::vector<uint64_t> fired = AdvanceTo(wheel, start + kYearMs);
  ASSERT_EQ(fired.size(), static_cast<size_t>(kTimers));
  std::vector<uint64_t> fired_deadlines;
  for (uint64_t cookie : fired) fired_deadlines.push_back(expected[cookie].first);
  EXPECT_TRUE(std::is_sorted(fired_deadlines.begin(), fired_deadlines.end()));
  EXPECT_EQ(std::set<uint64_t>(fired.begin(), fired.end()).size(), fired.size());
  EXPECT_EQ(wheel.size(), 2u);
  EXPECT_LE(wheel.NextExpiration().value(), start + kYearMs + 1);
  EXPECT_THAT(AdvanceTo(wheel, start + kYearMs + 1), ElementsAre(uint64_t{kTimers}));
  EXPECT_THAT(AdvanceTo(wheel, start + kYearMs + 100'000), ElementsAre(uint64_t{kTimers + 1}));
}

// An entry that fired can be re-inserted at once (as from inside expiry) and fires again later.
TEST(TimingWheelTest, ReinsertAfterFireFiresAgain) {
  TimingWheel wheel(0);
  TimerEntry entry;
  ASSERT_TRUE(wheel.Insert(&entry, 100, 1).ok());
  EXPECT_THAT(AdvanceTo(wheel, 150), ElementsAre(1u));
  ASSERT_TRUE(wheel.Insert(&entry, 5000, 2).ok());
  EXPECT_THAT(AdvanceTo(wheel, 4999), IsEmpty());
  EXPECT_THAT(AdvanceTo(wheel, 5000), ElementsAre(2u));
  // Re-inserted already overdue: fires on the next Advance.
  ASSERT_TRUE(wheel.Insert(&entry, 4000, 3).ok());
  EXPECT_THAT(AdvanceTo(wheel, 5000), ElementsAre(3u));
  EXPECT_TRUE(wheel.empty());
}

// size() counts inserts, and goes down on remove and fire, not on cascade or a rejected insert.
TEST(TimingWheelTest, SizeBookkeeping) {
  TimingWheel wheel(0);
  std::vector<TimerEntry> entries(4);
  ASSERT_TRUE(wheel.Insert(&entries[0], 10, 0).ok());
  ASSERT_TRUE(wheel.Insert(&entries[1], 70'000, 1).ok());
  ASSERT_TRUE(wheel.Insert(&entries[2], 80'000, 2).ok());
  EXPECT_FALSE(wheel.Insert(&entries[3], kHorizonMs, 3).ok());
  EXPECT_EQ(wheel.size(), 3u);
  wheel.Remove(&entries[2]);
  EXPECT_EQ(wheel.size(), 2u);
  EXPECT_THAT(AdvanceTo(wheel, 69'999), ElementsAre(0u));  // fires one, cascades the other
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_FALSE(wheel.empty());
  EXPECT_THAT(AdvanceTo(wheel, 70'000), ElementsAre(1u));
  EXPECT_EQ(wheel.size(), 0u);
  EXPECT_TRUE(wheel.empty());
}

// The destructor unlinks whatever is left, so that entries outliving the wheel are not dangling.
TEST(TimingWheelTest, DestructorUnlinksEverything) {
  std::vector<TimerEntry> entries(100);
  {
    TimingWheel wheel(3);
    for (size_t i = 0; i < entries.size(); ++i) {
      ASSERT_TRUE(wheel.Insert(&entries[i], 3 + i * i * i * 997, i).ok());
    }
    EXPECT_EQ(wheel.size(), entries.size());
  }
  for (const TimerEntry& entry : entries) {
    EXPECT_FALSE(entry.linked());
    EXPECT_EQ(entry.next, nullptr);
  }
}

// Random deadlines over every level, random Advance steps (including oversleeps of up to 2^35
// ms) and random cancels and overdue inserts, checked against a model: every timer fires exactly
// once, in the first Advance that reaches its deadline (never early, never late), in deadline
// order; cancelled timers never fire; NextExpiration() is never later than the earliest deadline.
class TimingWheelRandomTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(TimingWheelRandomTest, MatchesModel) {
  constexpr int kTimers = 100'000;
  std::mt19937_64 rng(GetParam());
  auto uniform = [&](uint64_t lo, uint64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  // Unaligned, and for some seeds close to a top-level rotation (wrap-around).
  const uint64_t start =
      GetParam() % 2 == 0 ? uniform(0, Pow64(4)) : Pow64(6) - uniform(1, 1 << 20);
  TimingWheel wheel(start);
  auto entries = std::make_unique<TimerEntry[]>(kTimers);
  std::vector<uint64_t> deadline_of(kTimers);
  std::vector<bool> cancelled(kTimers, false), has_fired(kTimers, false);
  std::set<std::pair<uint64_t, int>> pending;  // (deadline, id): the model
  std::vector<int> pending_ids;                // for picking random cancels (may hold stale ids)

  auto random_delay = [&]() -> uint64_t {
    switch (uniform(0, 9)) {
      case 0:  // exactly at a level boundary, relative
        return Pow64(static_cast<int>(uniform(1, 5))) + uniform(0, 2) - 1;
      case 1:  // far: up to the horizon
        return uniform(0, kHorizonMs - 1);
      default: {  // log-uniform over the levels
        const int level = static_cast<int>(uniform(0, 5));
        return uniform(0, Pow64(level + 1) - 1);
      }
    }
  };
  auto random_step = [&]() -> uint64_t {
    const uint64_t kind = uniform(0, 999);
    if (kind < 700) return uniform(0, 64);
    if (kind < 950) return uniform(0, 1 << 16);
    if (kind < 995) return uniform(0, 1 << 26);
    return uniform(0, uint64_t{1} << 35);  // oversleep
  };

  int inserted = 0;
  uint64_t previous_now = start;
  while (inserted < kTimers || !pending.empty()) {
    // Insert a batch (some already overdue).
    const int batch = inserted < kTimers ? static_cast<int>(uniform(1, 30)) : 0;
    for (int b = 0; b < batch && inserted < kTimers; ++b, ++inserted) {
      const int id = inserted;
      uint64_t deadline = wheel.now_ms() + random_delay();
      if (uniform(0, 99) == 0)
        deadline = wheel.now_ms() - std::min(wheel.now_ms(), uniform(0, 500));
      deadline_of[id] = deadline;
      ASSERT_TRUE(wheel.Insert(&entries[id], deadline, id).ok()) << deadline;
      pending.emplace(deadline, id);
      pending_ids.push_back(id);
    }
    // Cancel a few.
    for (int c = static_cast<int>(uniform(0, 3)); c > 0 && !pending_ids.empty(); --c) {
      const size_t pick = uniform(0, pending_ids.size() - 1);
      const int id = pending_ids[pick];
      pending_ids[pick] = pending_ids.back();
      pending_ids.pop_back();
      wheel.Remove(&entries[id]);  // a no-op when it already fired
      if (has_fired[id]) {
        ASSERT_EQ(wheel.size(), pending.size());
        continue;
      }
      cancelled[id] = true;
      pending.erase({deadline_of[id], id});
    }
    ASSERT_EQ(wheel.size(), pending.size());
    if (!pending.empty()) {
      ASSERT_LE(wheel.NextExpiration().value(), std::max(pending.begin()->first, wheel.now_ms()));
    } else {
      ASSERT_EQ(wheel.NextExpiration(), std::nullopt);
    }

    // Advance; at the end, far enough to drain everything (at most a horizon per step).
    const uint64_t now = inserted < kTimers ? wheel.now_ms() + random_step()
                                            : wheel.now_ms() + uniform(1, kHorizonMs);
    std::vector<uint64_t> fired;
    wheel.Advance(now, &fired);
    std::vector<std::pair<uint64_t, int>> expected;
    while (!pending.empty() && pending.begin()->first <= now) {
      expected.push_back(*pending.begin());
      pending.erase(pending.begin());
    }
    ASSERT_EQ(fired.size(), expected.size()) << "from " << previous_now << " to " << now;
    uint64_t last_deadline = 0;
    for (uint64_t cookie : fired) {
      const int id = static_cast<int>(cookie);
      ASSERT_FALSE(cancelled[id]) << id;
      ASSERT_FALSE(has_fired[id]) << id;
      has_fired[id] = true;
      ASSERT_LE(deadline_of[id], now);            // never early
      ASSERT_GE(deadline_of[id], last_deadline);  // in deadline order
      last_deadline = deadline_of[id];
      ASSERT_FALSE(entries[id].linked());
    }
    // Same set as the model (ids within one ms may come in any order).
    std::vector<uint64_t> expected_ids;
    for (const auto& [deadline, id] : expected) expected_ids.push_back(id);
    std::sort(expected_ids.begin(), expected_ids.end());
    std::sort(fired.begin(), fired.end());
    ASSERT_EQ(fired, expected_ids);
    previous_now = now;
  }
  for (int id = 0; id < kTimers; ++id) {
    ASSERT_NE(has_fired[id], cancelled[id]) << id;  // exactly one of the two
    ASSERT_FALSE(entries[id].linked());
  }
  EXPECT_TRUE(wheel.empty());
}

INSTANTIATE_TEST_SUITE_P(Seeds, TimingWheelRandomTest, ::testing::Values(1, 2, 3, 4));

}  // namespace
}  // namespace hourglass

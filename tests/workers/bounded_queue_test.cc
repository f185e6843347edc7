#include "workers/bounded_queue.h"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace hourglass {
namespace {

// Only a safety bound for a broken implementation: correct code never comes close to it.
constexpr absl::Duration kSafetyBound = absl::Seconds(30);

// TryPush fills the queue up to its capacity, then fails without touching the item.
TEST(BoundedQueueTest, TryPushFailsWhenFull) {
  BoundedQueue<std::string> queue(2);
  std::string a = "a", b = "b", c = "c";
  EXPECT_TRUE(queue.TryPush(a));
  EXPECT_TRUE(queue.TryPush(b));
  EXPECT_FALSE(queue.TryPush(c));
  EXPECT_EQ(c, "c");
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue.capacity(), 2u);
  EXPECT_EQ(queue.Pop(), "a");
  EXPECT_TRUE(queue.TryPush(c));
  EXPECT_EQ(queue.size(), 2u);
}

// A Push into a full queue blocks, and completes as soon as a Pop makes room.
TEST(BoundedQueueTest, PushBlocksWhileFull) {
  BoundedQueue<int> queue(1);
  ASSERT_TRUE(queue.Push(1));
  absl::Notification pushed;
  bool push_result = false;
  std::thread pusher([&] {
    push_result = queue.Push(2);
    pushed.Notify();
  });
  queue.WaitUntilBlockedForTest(/*pushers=*/1, /*poppers=*/0);
  EXPECT_FALSE(pushed.HasBeenNotified());
  EXPECT_EQ(queue.size(), 1u);

  EXPECT_EQ(queue.Pop(), 1);
  EXPECT_TRUE(pushed.WaitForNotificationWithTimeout(kSafetyBound));
  pusher.join();
  EXPECT_TRUE(push_result);
  EXPECT_EQ(queue.Pop(), 2);
  EXPECT_EQ(queue.size(), 0u);
}

// Items come out in the order they went in, also when pushes and pops interleave.
TEST(BoundedQueueTest, PopsInFifoOrder) {
  BoundedQueue<int> queue(100);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(queue.Push(i));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(queue.Pop(), i);
  for (int i = 100; i < 150; ++i) ASSERT_TRUE(queue.Push(i));
  for (int i = 50; i < 150; ++i) EXPECT_EQ(queue.Pop(), i);
  EXPECT_EQ(queue.size(), 0u);
}

// Close wakes a Push blocked on a full queue, which then returns false and drops its item.
TEST(BoundedQueueTest, CloseWakesBlockedPush) {
  BoundedQueue<int> queue(1);
  ASSERT_TRUE(queue.Push(1));
  bool push_result = true;
  std::thread pusher([&] { push_result = queue.Push(2); });
  queue.WaitUntilBlockedForTest(/*pushers=*/1, /*poppers=*/0);

  queue.Close();
  pusher.join();
  EXPECT_FALSE(push_result);
  EXPECT_EQ(queue.Pop(), 1);
  EXPECT_EQ(queue.Pop(), std::nullopt);
}

// Close wakes every Pop and PopBatch blocked on an empty queue; they return nullopt / 0.
TEST(BoundedQueueTest, CloseWakesBlockedPops) {
  BoundedQueue<int> queue(4);
  std::vector<std::optional<int>> popped(3, 0);
  std::vector<std::thread> poppers;
  for (int i = 0; i < 3; ++i) {
    poppers.emplace_back([&queue, &popped, i] { popped[i] = queue.Pop(); });
  }
  std::vector<int> batch;
  size_t batch_size = 99;
  poppers.emplace_back([&] { batch_size = queue.PopBatch(&batch, 8); });
  queue.WaitUntilBlockedForTest(/*pushers=*/0, /*poppers=*/4);

  queue.Close();
  for (std::thread& popper : poppers) popper.join();
  for (const std::optional<int>& item : popped) EXPECT_EQ(item, std::nullopt);
  EXPECT_EQ(batch_size, 0u);
  EXPECT_TRUE(batch.empty());
}

// After Close, pushes fail but Pop still hands out everything queued before returning nullopt.
TEST(BoundedQueueTest, PopDrainsRemainingItemsAfterClose) {
  BoundedQueue<int> queue(4);
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(queue.Push(i));
  EXPECT_FALSE(queue.closed());
  queue.Close();
  queue.Close();  // idempotent
  EXPECT_TRUE(queue.closed());

  EXPECT_FALSE(queue.Push(4));
  int five = 5;
  EXPECT_FALSE(queue.TryPush(five));
  EXPECT_EQ(five, 5);
  EXPECT_EQ(queue.size(), 3u);

  EXPECT_EQ(queue.Pop(), 1);
  EXPECT_EQ(queue.Pop(), 2);
  EXPECT_EQ(queue.Pop(), 3);
  EXPECT_EQ(queue.Pop(), std::nullopt);
  EXPECT_EQ(queue.Pop(), std::nullopt);
}

// PopBatch takes at most `max` of the oldest items, appends them in order, and takes what there
// is without waiting for more.
TEST(BoundedQueueTest, PopBatchTakesUpToMaxOldestFirst) {
  BoundedQueue<int> queue(8);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(queue.Push(i));
  std::vector<int> out = {-1};
  EXPECT_EQ(queue.PopBatch(&out, 3), 3u);
  EXPECT_EQ(out, (std::vector<int>{-1, 0, 1, 2}));
  EXPECT_EQ(queue.PopBatch(&out, 10), 2u);
  EXPECT_EQ(out, (std::vector<int>{-1, 0, 1, 2, 3, 4}));
  EXPECT_EQ(queue.size(), 0u);
}

// PopBatch blocks like Pop until the first item arrives, then returns what is there.
TEST(BoundedQueueTest, PopBatchBlocksForFirstItem) {
  BoundedQueue<int> queue(8);
  std::vector<int> out;
  size_t taken = 0;
  std::thread popper([&] { taken = queue.PopBatch(&out, 10); });
  queue.WaitUntilBlockedForTest(/*pushers=*/0, /*poppers=*/1);

  ASSERT_TRUE(queue.Push(7));
  popper.join();
  EXPECT_EQ(taken, 1u);
  EXPECT_EQ(out, std::vector<int>{7});
}

// PopBatch drains after Close and then returns 0; a `max` of 0 returns 0 at once, never blocking.
TEST(BoundedQueueTest, PopBatchReturnsZeroWhenClosedAndDrained) {
  BoundedQueue<int> queue(8);
  std::vector<int> out;
  EXPECT_EQ(queue.PopBatch(&out, 0), 0u);  // open and empty: would block for any max > 0

  ASSERT_TRUE(queue.Push(1));
  ASSERT_TRUE(queue.Push(2));
  queue.Close();
  EXPECT_EQ(queue.PopBatch(&out, 10), 2u);
  EXPECT_EQ(queue.PopBatch(&out, 10), 0u);
  EXPECT_EQ(out, (std::vector<int>{1, 2}));
}

// Move-only items pass through, and a failed TryPush leaves the caller's item intact.
TEST(BoundedQueueTest, CarriesMoveOnlyItems) {
  BoundedQueue<std::unique_ptr<int>> queue(1);
  ASSERT_TRUE(queue.Push(std::make_unique<int>(1)));
  auto second = std::make_unique<int>(2);
  EXPECT_FALSE(queue.TryPush(second));
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(*second, 2);

  std::optional<std::unique_ptr<int>> first = queue.Pop();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(**first, 1);
  EXPECT_TRUE(queue.TryPush(second));
  EXPECT_EQ(second, nullptr);
  EXPECT_EQ(**queue.Pop(), 2);
}

// 4 producers and 4 consumers through a small queue: every item comes out exactly once, and each
// consumer sees any one producer's items in the order that producer pushed them.
TEST(BoundedQueueTest, MpmcDeliversEveryItemExactlyOnce) {
  constexpr int kProducers = 4;
  constexpr int kConsumers = 4;
  constexpr int kItemsPerProducer = 100000;
  BoundedQueue<int> queue(64);

  std::vector<std::vector<int>> consumed(kConsumers);
  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&queue, &consumed, c] {
      std::vector<int>& mine = consumed[c];
      if (c % 2 == 0) {
        while (std::optional<int> item = queue.Pop()) mine.push_back(*item);
      } else {
        while (queue.PopBatch(&mine, 16) > 0) {
        }
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&queue, p] {
      for (int i = 0; i < kItemsPerProducer; ++i) {
        ASSERT_TRUE(queue.Push(p * kItemsPerProducer + i));
      }
    });
  }
  for (std::thread& producer : producers) producer.join();
  queue.Close();
  for (std::thread& consumer : consumers) consumer.join();

  std::vector<int> times_seen(kProducers * kItemsPerProducer, 0);
  size_t total = 0;
  for (const std::vector<int>& mine : consumed) {
    std::vector<int> last_from_producer(kProducers, -1);
    for (int item : mine) {
      ASSERT_GE(item, 0);
      ASSERT_LT(item, kProducers * kItemsPerProducer);
      ++times_seen[item];
      const int producer = item / kItemsPerProducer;
      ASSERT_GT(item, last_from_producer[producer]) << "out of order from producer " << producer;
      last_from_producer[producer] = item;
    }
    total += mine.size();
  }
  EXPECT_EQ(total, static_cast<size_t>(kProducers * kItemsPerProducer));
  for (int item = 0; item < kProducers * kItemsPerProducer; ++item) {
    ASSERT_EQ(times_seen[item], 1) << "item " << item;
  }
}

// A zero capacity is a programming error that ends the process instead of deadlocking later.
TEST(BoundedQueueDeathTest, ZeroCapacityAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(BoundedQueue<int>(0), "capacity must be >= 1");
}

}  // namespace
}  // namespace hourglass

#include "memory/batch_policy.hpp"

#include <gtest/gtest.h>

namespace shoal {
namespace {

TEST(BatchPolicy, SequentialStreamGrowsToTheMaximumInAlignedWindows) {
  BatchPolicy p;
  uint64_t page = 1000;
  PageWindow w = p.window_for(page);
  EXPECT_EQ(w.count, 64u);  // first fault: not yet a stream, so halved to the floor
  EXPECT_FALSE(w.sequential);
  EXPECT_EQ(w.first % w.count, 0u);
  EXPECT_LE(w.first, page);
  EXPECT_GT(w.first + w.count, page);
  for (int i = 0; i < 6; ++i) {
    page = w.first + w.count;  // the guest runs into the next page after the window
    const uint64_t before = w.count;
    w = p.window_for(page);
    EXPECT_TRUE(w.sequential);
    EXPECT_EQ(w.count, std::min<uint64_t>(before * 2, 512));
    EXPECT_EQ(w.first % w.count, 0u);
    EXPECT_LE(w.first, page);
    EXPECT_GT(w.first + w.count, page);
  }
  EXPECT_EQ(p.current_pages(), 512u);
}

TEST(BatchPolicy, RandomFaultsShrinkItToTheFloor) {
  BatchPolicy p;
  PageWindow w = p.window_for(0);
  for (int i = 0; i < 10; ++i) w = p.window_for(w.first + w.count);  // a stream: grows
  EXPECT_EQ(p.current_pages(), 512u);
  uint64_t x = 12345;
  for (int i = 0; i < 10; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p.window_for((x >> 20) % (1u << 24));
  }
  EXPECT_EQ(p.current_pages(), 64u);
}

TEST(BatchPolicy, TwoInterleavedStreamsBothCountAsSequential) {
  BatchPolicy p;
  uint64_t a = 0, b = 1u << 20;
  PageWindow wa = p.window_for(a), wb = p.window_for(b);
  for (int i = 0; i < 4; ++i) {
    wa = p.window_for(wa.first + wa.count);
    EXPECT_TRUE(wa.sequential);
    wb = p.window_for(wb.first + wb.count);
    EXPECT_TRUE(wb.sequential);
  }
}

TEST(BatchPolicy, PrefetchMovesTheStreamEnd) {
  BatchPolicy p;
  PageWindow w = p.window_for(0);
  w = p.window_for(w.first + w.count);
  ASSERT_TRUE(w.sequential);
  const uint64_t prefetched_to = w.first + 3 * w.count;
  p.prefetched(prefetched_to);
  EXPECT_TRUE(p.window_for(prefetched_to).sequential);
  EXPECT_FALSE(p.window_for(w.first + w.count + 1).sequential);
}

TEST(BatchPolicy, ConfigurableBounds) {
  BatchPolicy p(BatchPolicy::Config{1, 16, 4});
  EXPECT_EQ(p.window_for(7).count, 2u);  // not sequential: halved from 4
  for (int i = 0; i < 5; ++i) p.window_for(100000 * (i + 2));
  EXPECT_EQ(p.current_pages(), 1u);
  PageWindow w = p.window_for(7);
  EXPECT_EQ(w.first, 7u);
  EXPECT_EQ(w.count, 1u);
}

}  // namespace
}  // namespace shoal

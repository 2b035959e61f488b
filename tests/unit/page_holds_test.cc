#include "memory/page_holds.hpp"

#include <gtest/gtest.h>

namespace shoal {
namespace {

constexpr uint64_t kUs = 1000;

TEST(PageHolds, APageStaysForTheHoldAfterItArrives) {
  PageHolds h(200 * kUs, 3200 * kUs);
  EXPECT_EQ(h.held_until(7, 0), 0u);  // never arrived: nothing to wait for
  h.installed(7, /*tid=*/0, 1000 * kUs);
  EXPECT_EQ(h.held_until(7, 1100 * kUs), 1200 * kUs);
  EXPECT_EQ(h.held_until(7, 1200 * kUs), 0u);
  EXPECT_EQ(h.pages_held(), 0u);  // once over, forgotten
}

TEST(PageHolds, APageStaysWhileTheThreadThatFaultedOnItGoesOnFaulting) {
  PageHolds h(200 * kUs, 3200 * kUs);
  // A page walk: thread 41 gets the top table, then faults on the next levels one by one.
  h.faulted(41, 0);
  h.installed(1, 41, 100 * kUs);
  h.faulted(41, 250 * kUs);
  EXPECT_EQ(h.held_until(1, 300 * kUs), 450 * kUs);
  h.faulted(41, 400 * kUs);
  EXPECT_EQ(h.held_until(1, 450 * kUs), 600 * kUs);
  // Another thread's faults do not extend it.
  h.faulted(42, 550 * kUs);
  EXPECT_EQ(h.held_until(1, 600 * kUs), 0u);
}

TEST(PageHolds, AThreadThatNeverStopsFaultingHoldsAPageNoLongerThanTheLimit) {
  PageHolds h(200 * kUs, 1000 * kUs);
  h.installed(3, 9, 0);
  for (uint64_t t = 0; t < 1000 * kUs; t += 100 * kUs) {
    h.faulted(9, t);
    EXPECT_NE(h.held_until(3, t), 0u) << t;
  }
  h.faulted(9, 1000 * kUs);
  EXPECT_EQ(h.held_until(3, 1000 * kUs), 0u);
}

TEST(PageHolds, APageThatArrivesAgainStartsAFreshHold) {
  PageHolds h(200 * kUs, 400 * kUs);
  h.installed(5, 0, 0);
  h.installed(5, 0, 300 * kUs);
  // The first arrival is forgotten by its age; the second still holds.
  h.installed(6, 0, 450 * kUs);
  EXPECT_EQ(h.held_until(5, 450 * kUs), 500 * kUs);
  h.installed(8, 0, 2000 * kUs);
  EXPECT_EQ(h.pages_held(), 1u);  // 5 and 6 are past the longest hold
}

}  // namespace
}  // namespace shoal

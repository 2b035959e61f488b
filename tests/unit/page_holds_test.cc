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

TEST(PageHolds, APageStaysWhileItsThreadWaitsForTheNextPage) {
  PageHolds h(200 * kUs, 3200 * kUs);
  h.faulted(41, 0);
  h.installed(1, 41, 100 * kUs);
  // Thread 41 faults on the next table at 150 us and waits for it for a long time.
  h.faulted(41, 150 * kUs);
  h.wait_began(41);
  EXPECT_EQ(h.held_until(1, 1000 * kUs), 1200 * kUs);  // still waiting: held on
  EXPECT_EQ(h.held_until(1, 2000 * kUs), 2200 * kUs);
  h.wait_ended(41, 2500 * kUs);                        // the page came: it runs again
  EXPECT_EQ(h.held_until(1, 2600 * kUs), 2700 * kUs);  // a hold from the end of the wait
  EXPECT_EQ(h.held_until(1, 2700 * kUs), 0u);
  // Even a wait that never ends lets a page go at the limit.
  h.installed(2, 41, 5000 * kUs);
  h.wait_began(41);
  EXPECT_EQ(h.held_until(2, 8000 * kUs), 8200 * kUs);
  EXPECT_EQ(h.held_until(2, 8200 * kUs), 0u);
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

TEST(PageHolds, AWaitKeepsPagesOnlyFromHostsThatYield) {
  PageHolds h(200 * kUs, 3200 * kUs);
  // Thread 41 holds a walk's first table and waits for the next, which another host holds
  // and waits with in turn. Taken for a host that yields to this one, the page stays while
  // 41 waits; taken for one this host yields to, it goes after the plain hold.
  h.faulted(41, 0);
  h.installed(1, 41, 100 * kUs);
  h.faulted(41, 150 * kUs);
  h.wait_began(41);
  EXPECT_EQ(h.held_until(1, 1000 * kUs, /*waits_count=*/true), 1200 * kUs);
  EXPECT_EQ(h.held_until(1, 1000 * kUs, /*waits_count=*/false), 0u);
}

}  // namespace
}  // namespace shoal

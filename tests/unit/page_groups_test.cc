#include "memory/page_groups.hpp"

#include <gtest/gtest.h>

namespace shoal {
namespace {

constexpr uint64_t kMs = 1'000'000;

TEST(PageGroups, AFaultOnAPageTakenLatelyBringsTheOthersTakenWithinTheWindow) {
  PageGroups g(100 * kMs);
  // A walk's four tables went to another host, one after the other.
  g.taken(10, 1 * kMs);
  g.taken(11, 2 * kMs);
  g.taken(12, 3 * kMs);
  g.taken(13, 4 * kMs);
  EXPECT_TRUE(g.group_of(99, 5 * kMs).empty());  // never taken from here: a lone fault
  EXPECT_EQ(g.group_of(10, 5 * kMs), (std::vector<uint64_t>{13, 12, 11}));  // newest first
  // Asked for once: the same fault again (or one on a page of the group) brings nothing.
  EXPECT_TRUE(g.group_of(10, 6 * kMs).empty());
  EXPECT_TRUE(g.group_of(12, 6 * kMs).empty());
  EXPECT_EQ(g.remembered(), 0u);
}

TEST(PageGroups, PagesTakenLongerAgoThanTheWindowStayBehind) {
  PageGroups g(100 * kMs);
  g.taken(1, 0);
  g.taken(2, 50 * kMs);
  g.taken(3, 120 * kMs);
  EXPECT_EQ(g.group_of(3, 130 * kMs), (std::vector<uint64_t>{2}));  // 1 was taken 130 ms ago
  g.taken(4, 300 * kMs);
  EXPECT_TRUE(g.group_of(4, 400 * kMs).empty());  // itself too old: a lone fault
}

TEST(PageGroups, APageTakenAgainCountsOnceAtItsLatestTime) {
  PageGroups g(100 * kMs);
  g.taken(1, 0);
  g.taken(2, 10 * kMs);
  g.taken(1, 20 * kMs);
  g.taken(3, 30 * kMs);
  EXPECT_EQ(g.group_of(3, 40 * kMs), (std::vector<uint64_t>{1, 2}));
  // Taken again after its group was asked for: remembered again.
  g.taken(2, 50 * kMs);
  g.taken(5, 60 * kMs);
  EXPECT_EQ(g.group_of(5, 70 * kMs), (std::vector<uint64_t>{2}));
}

TEST(PageGroups, AGroupHasAtMostTheLimitAndTheTableStaysBounded) {
  PageGroups g(1000 * kMs);
  for (uint64_t p = 0; p < PageGroups::kMaxRemembered + 100; ++p) g.taken(p, p);
  EXPECT_LE(g.remembered(), PageGroups::kMaxRemembered);
  const uint64_t last = PageGroups::kMaxRemembered + 99;
  const auto group = g.group_of(last, last + 1);
  ASSERT_EQ(group.size(), PageGroups::kMaxGroup);
  EXPECT_EQ(group.front(), last - 1);
  EXPECT_EQ(group.back(), last - PageGroups::kMaxGroup);
  EXPECT_TRUE(g.group_of(0, last + 1).empty());  // the oldest went when the table was full
}

}  // namespace
}  // namespace shoal

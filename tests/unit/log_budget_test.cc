#include "base/log_budget.hpp"

#include <gtest/gtest.h>

namespace shoal {
namespace {

TEST(LogBudget, LetsABurstThroughPerIntervalAndCountsTheRest) {
  LogBudget b(3, 1000);
  uint64_t held = 99;
  int allowed = 0;
  for (uint64_t t = 5000; t < 5005; ++t) allowed += b.allow(t, &held) ? 1 : 0;
  EXPECT_EQ(allowed, 3);
  EXPECT_EQ(held, 0u);  // the three that went out had nothing held back before them
  EXPECT_FALSE(b.allow(5999, &held));
  ASSERT_TRUE(b.allow(6000, &held));  // a new interval
  EXPECT_EQ(held, 3u);
  EXPECT_EQ(held_back(held), " (3 more held back)");
  EXPECT_EQ(held_back(0), "");
}

}  // namespace
}  // namespace shoal

// The placement model (pod/placement.hpp) driven by fault traces, no KVM: what moves, what
// does not, and the thrash cases.
#include "pod/placement.hpp"

#include <gtest/gtest.h>

namespace shoal {
namespace {

constexpr uint64_t kMs = 1'000'000;

// The tests' own constants (the defaults may be tuned): 250 ms windows, a 1 s residence.
PlacementConfig config() {
  PlacementConfig c;
  c.window_ns = 250 * kMs;
  c.min_faults = 64;
  c.dominant_share = 0.8;
  c.windows_to_agree = 2;
  c.residence_ns = 1000 * kMs;
  return c;
}

// Member h0 of a 2-host pod, vCPUs 0-1 on h0 and 2-3 on h1, three vCPUs per host at most.
class Placement : public ::testing::Test {
 protected:
  PlacementModel model{config(), 0, 4, 2};
  std::vector<NodeId> table{0, 0, 1, 1};
  uint64_t version = 0;
  std::vector<int> capacity{3, 3};
  uint64_t now = 0;

  // One window in which `vcpu` has `n` remote faults, `from_h1` of them served by h1 (the
  // rest by h0 itself, which cannot happen for a remote fault: they stand for "elsewhere").
  std::vector<PlacementProposal> window(uint32_t vcpu, int from_h1, int from_h0 = 0) {
    for (int i = 0; i < from_h1; ++i) model.remote_fault(vcpu, 1);
    for (int i = 0; i < from_h0; ++i) model.remote_fault(vcpu, 0);
    now += 250 * kMs;
    return model.end_window(now, table, version, capacity);
  }
};

TEST_F(Placement, AVcpuWhosePagesComeFromOneHostMovesThereAfterTwoWindows) {
  window(0, 0);                              // the first window starts the clock
  for (int i = 0; i < 3; ++i) window(0, 0);  // a second goes by: residence
  EXPECT_TRUE(window(0, 500).empty());       // one window is not enough
  auto p = window(0, 500);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].vcpu, 0u);
  EXPECT_EQ(p[0].to, 1);
  EXPECT_EQ(p[0].version, version);
}

TEST_F(Placement, FewFaultsOrPagesFromSeveralHostsMoveNothing) {
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(window(0, 10).empty()) << i;  // under min_faults
  // Pages several hosts write (here: as many from "elsewhere" as from h1): no dominant host.
  PlacementModel three{config(), 0, 3, 3};
  std::vector<NodeId> t{0, 1, 2};
  for (int w = 0; w < 10; ++w) {
    for (int i = 0; i < 300; ++i) three.remote_fault(0, 1 + i % 2);
    EXPECT_TRUE(
        three.end_window(static_cast<uint64_t>(w + 1) * 250 * kMs, t, 0, {2, 2, 2}).empty());
  }
}

TEST_F(Placement, AVcpuThatJustArrivedStaysItsResidenceTime) {
  table = {0, 0, 1, 1};
  window(0, 0);
  EXPECT_TRUE(window(0, 500).empty());
  EXPECT_TRUE(window(0, 500).empty());  // 500 ms here: under the 1 s residence
  EXPECT_TRUE(window(0, 500).empty());
  EXPECT_EQ(window(0, 500).size(), 1u);  // 1 s
}

TEST_F(Placement, AnyMoveInThePodStartsTheEvidenceOver) {
  for (int i = 0; i < 5; ++i) window(0, 0);
  EXPECT_TRUE(window(0, 500).empty());
  table = {0, 0, 0, 1};  // vCPU 2 moved meanwhile
  ++version;
  EXPECT_TRUE(window(0, 500).empty());  // the window that saw the move counts for nothing
  EXPECT_TRUE(window(0, 500).empty());  // one window again
  EXPECT_EQ(window(0, 500).size(), 1u);
}

TEST_F(Placement, AFullHostTakesNoMore) {
  table = {0, 1, 1, 1};
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(window(0, 500).empty()) << i;
}

TEST_F(Placement, OnlyTheBusiestVcpuIsProposedInAWindow) {
  for (int i = 0; i < 5; ++i) window(0, 0);
  for (int i = 0; i < 2; ++i) {
    model.remote_fault(1, 1);
    for (int f = 0; f < 300; ++f) model.remote_fault(1, 1);
    for (int f = 0; f < 200; ++f) model.remote_fault(0, 1);
    now += 250 * kMs;
    auto p = model.end_window(now, table, version, capacity);
    if (i == 1) {
      ASSERT_EQ(p.size(), 1u);
      EXPECT_EQ(p[0].vcpu, 1u);
    }
  }
}

// The thrash case: vCPU 0 (h0) and vCPU 2 (h1) write the same pages. Each member proposes to
// send its vCPU to the other host on the same evidence (the same table version); host 0 takes
// the first and drops the second (its version is stale), and once they share a host neither
// has remote faults left, so nothing moves back.
TEST(PlacementThrash, TwoVcpusSharingPagesEndOnOneHostAndStay) {
  PlacementModel h0{config(), 0, 4, 2}, h1{config(), 1, 4, 2};
  std::vector<NodeId> table{0, 0, 1, 1};
  uint64_t version = 0, now = 0;
  const std::vector<int> capacity{3, 3};
  std::vector<PlacementProposal> taken;
  for (int w = 0; w < 40; ++w) {
    const bool together = table[0] == table[2];
    if (!together)
      for (int i = 0; i < 400; ++i) {
        h0.remote_fault(table[0] == 0 ? 0 : 2, 1);
        h1.remote_fault(table[2] == 1 ? 2 : 0, 0);
      }
    now += 250 * kMs;
    auto p = h0.end_window(now, table, version, capacity);
    auto q = h1.end_window(now, table, version, capacity);
    p.insert(p.end(), q.begin(), q.end());
    for (const PlacementProposal& x : p) {
      if (x.version != version) continue;  // host 0's rule: evidence from an older table
      table[x.vcpu] = x.to;
      ++version;
      taken.push_back(x);
    }
  }
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(table[0], table[2]);
}

}  // namespace
}  // namespace shoal

// The placement policy (docs/placement.md) on netns hosts: the test guest's `wander` pairs
// vCPUs across two hosts over shared pages; with `placement: auto` one vCPU of each pair
// moves to its partner's host, with `static` nothing moves.
#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>

#include "support/pod_cluster.hpp"

namespace shoal::test {
namespace {

// "placement 0@h0 1@h1 2@h0 3@h1 (v2)" from `pod status`: the host of each vCPU, and the version.
std::pair<std::vector<std::string>, std::string> placement_of(const std::string& status) {
  std::smatch m;
  static const std::regex line(R"(placement 0@(h\d+) 1@(h\d+) 2@(h\d+) 3@(h\d+) \((v\d+)\))");
  if (!std::regex_search(status, m, line)) return {};
  return {{m[1], m[2], m[3], m[4]}, m[5]};
}

TEST(PodPlacement, AutoBringsEachWanderingPairOntoOneHost) {
  SHOAL_REQUIRE_POD_HOSTS();
  auto r = in_cluster(2, pod_spec(2, "wander 1000", 2, 256, "8M", "auto"),
                      "$SHOAL pod up $SPEC; echo up-exit=$?; $SHOAL pod status $SPEC");
  EXPECT_NE(r.out.find("wander vcpus=4 rounds=1000"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("bad=0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("up-exit=0"), std::string::npos) << r.out << r.err;
  auto [hosts, version] = placement_of(r.out);
  ASSERT_EQ(hosts.size(), 4u) << r.out;
  // Pairs are (0, 2) and (1, 3); each starts split across h0 and h1.
  EXPECT_EQ(hosts[0], hosts[2]) << r.out;
  EXPECT_EQ(hosts[1], hosts[3]) << r.out;
  EXPECT_NE(version, "v0") << r.out;
}

TEST(PodPlacement, StaticMovesNothing) {
  SHOAL_REQUIRE_POD_HOSTS();
  // ~4 s here; a round costs ~10x more in the emulated test machine.
  const std::string rounds = std::getenv("SHOAL_TEST_VM") ? "5" : "30";
  auto r = in_cluster(2, pod_spec(2, "wander " + rounds, 2, 256, "8M", "static"),
                      "$SHOAL pod up $SPEC; echo up-exit=$?; $SHOAL pod status $SPEC");
  EXPECT_NE(r.out.find("up-exit=0"), std::string::npos) << r.out << r.err;
  auto [hosts, version] = placement_of(r.out);
  EXPECT_EQ(hosts, (std::vector<std::string>{"h0", "h0", "h1", "h1"})) << r.out;
  EXPECT_EQ(version, "v0") << r.out;
}

}  // namespace
}  // namespace shoal::test

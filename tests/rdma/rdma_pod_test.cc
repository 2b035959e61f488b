// Pods whose members talk over RDMA: `shoal node` processes on 127.1.0.x in the test
// machine (scripts/netns-cluster with SHOAL_CLUSTER_RDMA=1), KVM through emulated AMD-V, pages
// over soft-RoCE. Skips without a verbs device or /dev/kvm.
#include <gtest/gtest.h>

#include "rdma/rdma_test_support.hpp"
#include "support/pod_cluster.hpp"

namespace shoal::test {
namespace {

#define SHOAL_REQUIRE_RDMA_POD()                                         \
  do {                                                                   \
    SHOAL_REQUIRE_KVM();                                                 \
    if (auto d = rdma_device(); !d) GTEST_SKIP() << d.error().message(); \
  } while (0)

// The nodes' logs follow the script's output on stderr.
ProcessResult in_rdma_cluster(int hosts, const std::string& spec, const std::string& script) {
  const std::string logs = write_temp_file("rdma-logs-marker", "") + ".d";
  return in_cluster(hosts, spec,
                    "mkdir -p " + logs + "; " + script + "; cat " + logs + "/h*.log >&2",
                    {"SHOAL_CLUSTER_RDMA=1", "SHOAL_CLUSTER_LOGS=" + logs});
}

TEST(RdmaPod, TwoHostsCountExactlyOneMillionOverRdma) {
  SHOAL_REQUIRE_RDMA_POD();
  auto r = in_rdma_cluster(2, pod_spec(2, "counter-total 1000000", 2, 256, "8M", "static", "rdma"),
                           "$SHOAL pod up $SPEC; echo up-exit=$?");
  EXPECT_NE(r.out.find("up-exit=0"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("counter vcpus=4 total=1000000 expected=1000000"), std::string::npos)
      << r.out << r.err;
  // Both ends of the one member-to-member link say it runs over RDMA.
  EXPECT_NE(r.err.find("pod podtest: RDMA link to h0 up on rxe0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pod podtest: RDMA link to h1 up on rxe0"), std::string::npos) << r.err;
  for (int i = 0; i < 2; ++i)
    EXPECT_NE(r.err.find("host h" + std::to_string(i) + ": the guest exited with code 0"),
              std::string::npos)
        << r.err;
}

TEST(RdmaPod, IpisAcrossThreeHostsArriveExactlyOnceWhileVcpusMove) {
  SHOAL_REQUIRE_RDMA_POD();
  // Everything else that crosses a link, over RDMA: interrupts (each IPI to a vCPU on another
  // host is a message), vCPU moves (the saved state, the location table) and forwarded exits.
  auto r =
      in_rdma_cluster(3, pod_spec(3, "ipi 150", 2, 256, "8M", "static", "rdma"),
                      "out=$(mktemp); $SHOAL pod up $SPEC > $out 2>&1 & up=$!; " + wait_running(3) +
                          "ok=0; for i in $(seq 6); do "
                          "$SHOAL pod move $SPEC --vcpu $((i % 2 ? 1 : 4)) --to h$((i % 3)) "
                          "  > /dev/null && ok=$((ok + 1)); done; echo moves-ok=$ok; "
                          "wait $up; echo up-exit=$?; cat $out");
  EXPECT_FALSE(r.timed_out) << r.out << r.err;
  EXPECT_NE(r.out.find("moves-ok=6"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("ipi vcpus=6 sent=900 received=900 lost=0"), std::string::npos)
      << r.out << r.err;
  EXPECT_NE(r.out.find("up-exit=0"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("pod podtest: RDMA link to h2 up on rxe0"), std::string::npos) << r.err;
}

TEST(RdmaPod, AMemberKilledMidRunStopsThePodCleanly) {
  SHOAL_REQUIRE_RDMA_POD();
  auto r = in_rdma_cluster(2, pod_spec(2, "handoff 10000000", 2, 256, "8M", "static", "rdma"),
                           "$SHOAL pod up $SPEC & up=$!; " + wait_running(2) +
                               "sleep 2; kill -9 ${SHOAL_NODE_PIDS#* }; wait $up; echo up-exit=$?; "
                               "$SHOAL pod status $SPEC");
  EXPECT_FALSE(r.timed_out) << r.out << r.err;
  EXPECT_NE(r.out.find("up-exit=1"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("lost host h1"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("h0: pod podtest host h0 (1/2): stopped"), std::string::npos) << r.out;
}

TEST(RdmaPod, AMemberThatGoesSilentIsLostByItsMissingHeartbeats) {
  SHOAL_REQUIRE_RDMA_POD();
  // SIGSTOP: h1's TCP side channel stays open and its queue pair stays up, but nothing of it
  // runs, so only the heartbeats over RDMA can tell.
  auto r = in_rdma_cluster(2, pod_spec(2, "handoff 100000000", 2, 256, "8M", "static", "rdma"),
                           "$SHOAL pod up $SPEC & up=$!; " + wait_running(2) +
                               "sleep 1; kill -STOP ${SHOAL_NODE_PIDS#* }; wait $up; "
                               "echo up-exit=$?; kill -9 ${SHOAL_NODE_PIDS#* }");
  EXPECT_FALSE(r.timed_out) << r.out << r.err;
  EXPECT_NE(r.out.find("up-exit=1"), std::string::npos) << r.out << r.err;
  const std::string timeout = pod_failure_timeout();  // "10s" -> "10.0 s"
  // h0 itself saw it, over its RDMA link (not only `pod up` over its TCP link to h1).
  EXPECT_NE(r.err.find("host h0: lost host h1: no heartbeat for " +
                       timeout.substr(0, timeout.size() - 1) + ".0 s"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("pod podtest: stopping: lost host h1: no heartbeat"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace shoal::test

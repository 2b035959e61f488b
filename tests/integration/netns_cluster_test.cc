// Pods of hosts in network namespaces on this machine (scripts/netns-cluster): nodes
// authenticate each other over TCP, refuse a wrong secret, and the cluster cleans up.
#include <gtest/gtest.h>

#include "support/cluster.hpp"
#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

using std::chrono::seconds;

std::string pod_spec(int hosts, const std::string& secret) {
  std::string s =
      "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: netns}\nspec:\n"
      "  guest: {kernel: " SHOAL_TEST_GUEST "}\n  memory: 1G\n  vcpus: " +
      std::to_string(2 * hosts) + "\n  secretFile: " + secret + "\n  hosts:\n";
  for (int i = 0; i < hosts; ++i)
    s += "    - {name: h" + std::to_string(i) + ", address: \"127.77.0." + std::to_string(i + 1) +
         ":7100\", vcpus: \"" + std::to_string(2 * i) + "-" + std::to_string(2 * i + 1) + "\"}\n";
  return s;
}

ProcessResult cluster(int hosts, const std::string& secret, std::vector<std::string> command) {
  std::vector<std::string> argv = {"/usr/bin/env",
                                   "SHOAL_BIN=" SHOAL_BINARY,
                                   SHOAL_SOURCE_DIR "/scripts/netns-cluster",
                                   std::to_string(hosts),
                                   secret,
                                   "--"};
  argv.insert(argv.end(), command.begin(), command.end());
  return run_process(argv, seconds(60));
}

TEST(NetnsCluster, NodesAuthenticateEachOtherAcrossNamespaces) {
  SHOAL_REQUIRE_NETNS();
  for (int hosts : {2, 3}) {
    const auto secret = write_temp_file("pod.secret", "netns-test-secret-0123456789\n");
    const auto spec = write_temp_file("pod.yaml", pod_spec(hosts, secret));
    auto r = cluster(hosts, secret, {SHOAL_BINARY, "pod", "ping", spec});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    for (int i = 0; i < hosts; ++i)
      EXPECT_NE(r.out.find("node 'h" + std::to_string(i) + "' ok"), std::string::npos) << r.out;
  }
}

TEST(NetnsCluster, WrongSecretIsRefusedAndNothingIsLeftBehind) {
  SHOAL_REQUIRE_NETNS();
  const auto secret = write_temp_file("pod.secret", "netns-test-secret-0123456789\n");
  const auto wrong = write_temp_file("wrong.secret", "not-the-pod-secret-at-all\n");
  const auto spec = write_temp_file("pod.yaml", pod_spec(2, secret));
  auto r = cluster(2, secret, {SHOAL_BINARY, "pod", "ping", spec, "--secret-file", wrong});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("failed authentication"), std::string::npos) << r.out;
  auto ns = run_process({"/usr/bin/env", "ip", "netns", "list"}, seconds(10));
  EXPECT_EQ(ns.out.find("shl"), std::string::npos) << "namespaces left behind:\n" << ns.out;
}

TEST(NetnsCluster, AFloodOfSilentConnectionsStaysBoundedAndAPodStillStarts) {
  SHOAL_REQUIRE_NETNS();
  SHOAL_REQUIRE_KVM();
  const auto secret = write_temp_file("pod.secret", "netns-test-secret-0123456789\n");
  const auto spec = write_temp_file("pod.yaml", pod_spec(2, secret));
  // 1000 connections to h0 that never say a word, held open while a pod starts; then, after
  // the handshake deadline, h0's threads and descriptors.
  const std::string script =
      "ulimit -n 4096; for i in $(seq 1000); do exec {fd}<>/dev/tcp/127.77.0.1/7100 || "
      "echo open-failed; done; " SHOAL_BINARY " pod up " +
      spec +
      "; echo up-exit=$?; sleep 2.5; node=${SHOAL_NODE_PIDS%% *}; "
      "echo threads=$(ls /proc/$node/task | wc -l) fds=$(ls /proc/$node/fd | wc -l)";
  auto r = cluster(2, secret, {"/bin/bash", "-c", script});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("open-failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("up-exit=0"), std::string::npos) << r.out << r.err;
  const auto t = r.out.find("threads="), f = r.out.find("fds=");
  ASSERT_NE(t, std::string::npos) << r.out;
  ASSERT_NE(f, std::string::npos) << r.out;
  EXPECT_LE(std::stoi(r.out.substr(t + 8)), 32) << r.out;
  EXPECT_LE(std::stoi(r.out.substr(f + 4)), 256) << r.out;
}

}  // namespace
}  // namespace shoal::test

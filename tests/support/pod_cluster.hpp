// Pods of test guests on hosts in network namespaces (scripts/netns-cluster), for the pod tests.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/kvm_available.hpp"
#include "support/process.hpp"

#define SHOAL_REQUIRE_POD_HOSTS() \
  do {                            \
    SHOAL_REQUIRE_NETNS();        \
    SHOAL_REQUIRE_KVM();          \
  } while (0)

namespace shoal::test {

// The pod secret's file (made once per test process).
const std::string& pod_secret();

// The specs' failureTimeout: "1s", longer where everything runs slower.
const char* pod_failure_timeout();

// A pod spec file: `hosts` hosts named h0.. at 127.77.0.<i+1>:7100, `vcpus_each` vCPUs each,
// `memory_mib` of guest memory split evenly, and a zero pool of `pool` per host; the test
// guest runs `cmdline`; `placement`: the spec's (static unless a test asks for auto: most
// tests check where vCPUs run or make hosts share pages). `transport` rdma: the hosts are at
// 127.1.0.<i+1> (netns-cluster's SHOAL_CLUSTER_RDMA=1).
std::string pod_spec(int hosts, const std::string& cmdline, int vcpus_each = 2,
                     int memory_mib = 256, const std::string& pool = "8M",
                     const std::string& placement = "static", const std::string& transport = "tcp");

// Runs `script` (bash) in host 0's namespace of a fresh cluster of `hosts` nodes; $SPEC is
// the pod spec, $SHOAL the binary. `env`: more NAME=VALUE for scripts/netns-cluster. Killed
// after `limit`.
ProcessResult in_cluster(int hosts, const std::string& spec_path, const std::string& script,
                         std::vector<std::string> env = {},
                         std::chrono::seconds limit = std::chrono::seconds(120));

// Bash that waits (up to 10 s) until host 0 of a pod of `hosts` hosts says the pod runs.
std::string wait_running(int hosts);

}  // namespace shoal::test

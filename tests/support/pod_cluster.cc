#include "support/pod_cluster.hpp"

#include <chrono>
#include <cstdlib>

#include "support/sanitized.hpp"

namespace shoal::test {

const std::string& pod_secret() {
  static const std::string path =
      write_temp_file("pod.secret", "pod-test-secret-0123456789abcdef\n");
  return path;
}

// The emulated test machine runs everything ~50x slower, and the sanitized build ~3x with 32
// nodes on 2 cores: a heartbeat can be late there by more than a second without any host being
// gone.
const char* pod_failure_timeout() {
  if (std::getenv("SHOAL_TEST_VM")) return "10s";
  return kSanitized ? "5s" : "1s";
}

std::string pod_spec(int hosts, const std::string& cmdline, int vcpus_each, int memory_mib,
                     const std::string& pool, const std::string& placement,
                     const std::string& transport) {
  std::string s =
      "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: podtest}\nspec:\n"
      "  guest: {kernel: " SHOAL_TEST_GUEST ", cmdline: \"" +
      cmdline + "\"}\n  memory: " + std::to_string(memory_mib) +
      "M\n  vcpus: " + std::to_string(vcpus_each * hosts) + "\n  transport: " + transport +
      "\n  secretFile: " + pod_secret() + "\n  failureTimeout: " + pod_failure_timeout() +
      "\n  placement: " + placement + "\n  hosts:\n";
  for (int i = 0; i < hosts; ++i) {
    const int first = vcpus_each * i, last = first + vcpus_each - 1;
    const std::string vcpus =
        std::to_string(first) + (last > first ? "-" + std::to_string(last) : "");
    const std::string net = transport == "rdma" ? "127.1.0." : "127.77.0.";
    s += "    - {name: h" + std::to_string(i) + ", address: \"" + net + std::to_string(i + 1) +
         ":7100\", vcpus: \"" + vcpus + "\", memory: even, zeroPool: " + pool + "}\n";
  }
  return write_temp_file("pod-" + std::to_string(hosts) + "x" + std::to_string(vcpus_each) + "-" +
                             placement + "-" + transport + ".yaml",
                         s);
}

ProcessResult in_cluster(int hosts, const std::string& spec_path, const std::string& script,
                         std::vector<std::string> env, std::chrono::seconds limit) {
  std::vector<std::string> argv = {"/usr/bin/env", "SHOAL_BIN=" SHOAL_BINARY};
  argv.insert(argv.end(), env.begin(), env.end());
  for (const std::string& a :
       {std::string(SHOAL_SOURCE_DIR "/scripts/netns-cluster"), std::to_string(hosts), pod_secret(),
        std::string("--"), std::string("/usr/bin/env"), "SPEC=" + spec_path,
        std::string("SHOAL=" SHOAL_BINARY), std::string("bash"), std::string("-c"), script})
    argv.push_back(a);
  return run_process(argv, limit);
}

std::string wait_running(int hosts) {
  return "for i in $(seq 100); do $SHOAL pod status $SPEC 2>/dev/null | grep -q 'h0 (1/" +
         std::to_string(hosts) + "): running' && break; sleep 0.1; done; ";
}

}  // namespace shoal::test

// What shoal's memory metadata costs on the host: peak resident memory (VmHWM) against the
// guest pages each host actually touched plus its zero pool.
// - pod: 2 hosts in network namespaces (scripts/netns-cluster, TCP), 64 GiB declared, one vCPU
//   per host, `touch 1024`: each vCPU writes every other page of 1 GiB and vCPU 0 (host 0)
//   then reads all of it, so host 0 touches 1024 MiB and host 1 512 MiB;
// - single host: 1 TiB declared, `touch 256`.
// The allowance is touched + pool + 150 MiB per pod node and + 100 MiB for the single host.
// Needs root (ip netns) and /dev/kvm.
//   pod_memory [--json]
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace {

using shoal::test::ProcessResult;
using shoal::test::run_process;

constexpr long kPoolMib = 64;

struct Row {
  std::string name;
  long peak_mib = -1;
  long touched_mib = 0;
  long allowance_mib = 0;  // touched + pool + slack
};

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = "/tmp/shoal-pod-memory-" + std::to_string(getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

// Host 0's and host 1's VmHWM in MiB, from the lines "hwm <pid> <kB>" the command prints.
std::vector<long> parse_hwm(const std::string& out) {
  std::vector<long> mib;
  std::istringstream in(out);
  std::string word;
  while (in >> word)
    if (word == "hwm") {
      long pid = 0, kb = 0;
      in >> pid >> kb;
      mib.push_back(kb / 1024);
    }
  return mib;
}

std::string pod_rows(std::vector<Row>& rows) {
  const std::string secret = write_file("secret", "pod-memory-bench-secret-0123456789\n");
  std::string spec =
      "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: podmem}\nspec:\n"
      "  guest: {kernel: " SHOAL_TEST_GUEST
      ", cmdline: \"touch 1024\"}\n"
      "  memory: 64G\n  vcpus: 2\n  transport: tcp\n  placement: static\n  secretFile: " +
      secret + "\n  hosts:\n";
  for (int i = 0; i < 2; ++i)
    spec += "    - {name: h" + std::to_string(i) + ", address: \"127.77.0." +
            std::to_string(i + 1) + ":7100\", vcpus: \"" + std::to_string(i) +
            "\", memory: even, zeroPool: " + std::to_string(kPoolMib) + "M}\n";
  const std::string spec_path = write_file("pod.yaml", spec);
  const std::string script = std::string(SHOAL_BINARY) + " pod up " + spec_path +
                             " || exit 1; for p in $SHOAL_NODE_PIDS; do "
                             "echo hwm $p $(awk '/^VmHWM/ {print $2}' /proc/$p/status); done";
  ProcessResult r = run_process(
      {"/usr/bin/env", "SHOAL_BIN=" SHOAL_BINARY, SHOAL_SOURCE_DIR "/scripts/netns-cluster", "2",
       secret, "--", "/bin/bash", "-c", script},
      std::chrono::seconds(300));
  unlink(secret.c_str());
  unlink(spec_path.c_str());
  const std::vector<long> hwm = parse_hwm(r.out);
  if (r.exit_code != 0 || hwm.size() != 2)
    return "pod run failed (exit " + std::to_string(r.exit_code) + "): " + r.err.substr(0, 400);
  const long touched[2] = {1024, 512};
  for (int i = 0; i < 2; ++i)
    rows.push_back({"pod node h" + std::to_string(i) + " (64 GiB, touch 1024)", hwm[i], touched[i],
                    touched[i] + kPoolMib + 150});
  return "";
}

std::string single_row(std::vector<Row>& rows) {
  ProcessResult r =
      run_process({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", "1T",
                   "--zero-pool", std::to_string(kPoolMib) + "M", "--cmdline", "touch 256"},
                  std::chrono::seconds(120));
  if (r.exit_code != 0) return "single-host run failed: " + r.err.substr(0, 400);
  rows.push_back(
      {"single host (1 TiB, touch 256)", r.max_rss_kb / 1024, 256, 256 + kPoolMib + 100});
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  const bool json = argc > 1 && std::strcmp(argv[1], "--json") == 0;
  if (geteuid() != 0) {
    std::printf("pod_memory: skipped: needs root (ip netns)\n");
    return 0;
  }
  std::vector<Row> rows;
  std::string failure = single_row(rows);
  if (failure.empty()) failure = pod_rows(rows);
  if (!failure.empty()) {
    std::fprintf(stderr, "pod_memory: %s\n", failure.c_str());
    return 1;
  }
  bool all_within = true;
  for (const Row& r : rows) all_within = all_within && r.peak_mib <= r.allowance_mib;
  if (json) {
    std::printf("{\"pool_mib\": %ld, \"rows\": [", kPoolMib);
    for (size_t i = 0; i < rows.size(); ++i)
      std::printf(
          "%s{\"name\": \"%s\", \"peak_mib\": %ld, \"touched_mib\": %ld, "
          "\"allowance_mib\": %ld}",
          i ? ", " : "", rows[i].name.c_str(), rows[i].peak_mib, rows[i].touched_mib,
          rows[i].allowance_mib);
    std::printf("], \"all_within\": %s}\n", all_within ? "true" : "false");
    return 0;
  }
  std::printf("%-36s %10s %12s %14s %9s\n", "", "peak MiB", "touched MiB", "allowance MiB",
              "extra MiB");
  for (const Row& r : rows)
    std::printf("%-36s %10ld %12ld %14ld %+8ld%s\n", r.name.c_str(), r.peak_mib, r.touched_mib,
                r.allowance_mib, r.peak_mib - r.touched_mib - kPoolMib,
                r.peak_mib <= r.allowance_mib ? "" : "  OVER");
  std::printf(
      "(extra: peak - touched - pool; allowance: touched + %ld MiB pool + 150 MiB per pod node,\n "
      "+ 100 MiB single host)\n",
      kPoolMib);
  return 0;
}

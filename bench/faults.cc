// First-touch cost of guest memory: the test guest, at CPL3 on one vCPU, writes one word to
// every page of 128 MiB, in order and in a fixed random order, and reports the TSC cycles its
// loop took. Five ways of serving those first touches are compared in one run, as µs per page
// and as ratios: prefaulted (the lower bound), the kernel's own first touch (no userfaultfd,
// what QEMU and Firecracker get), userfaultfd COPY one page per fault, pool + MOVE one page
// per fault, and shoal's pool with adaptive batches (a pool that is full when the touching
// starts, as its watermarks keep it between bursts, and the defaults from a cold start). The
// last row is a pod member serving first touches of its own dormant pages: a pod of one host
// in a network namespace (scripts/netns-cluster; needs root), defaults, against the single
// host's defaults.
//   faults [--json] [RUNS]
#include <sys/stat.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "support/process.hpp"

namespace {

using shoal::test::run_process;

double tsc_hz() {
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t c0 = __rdtsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const uint64_t c1 = __rdtsc();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(c1 - c0) / s;
}

struct Variant {
  const char* name;
  std::vector<std::string> flags;
  bool pod = false;  // run as a pod of one host, not `shoal run`
};

// A pod of one host running `workload` on 1 vCPU with 512 MiB and the default zero pool.
std::vector<std::string> pod_argv(const std::string& workload) {
  const std::string dir = "/tmp/shoal-faults-" + std::to_string(getpid());
  mkdir(dir.c_str(), 0700);
  const std::string secret = dir + "/secret", spec = dir + "/pod.yaml";
  std::ofstream(secret) << "faults-bench-secret-0123456789abcdef\n";
  std::ofstream(spec)
      << "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: faults}\nspec:\n"
         "  guest: {kernel: " SHOAL_TEST_GUEST ", cmdline: \""
      << workload << "\"}\n  memory: 512M\n  vcpus: 1\n  transport: tcp\n  secretFile: " << secret
      << "\n  hosts:\n    - {name: h0, address: \"127.77.0.1:7100\", vcpus: \"0\"}\n";
  return {"/usr/bin/env",
          "SHOAL_BIN=" SHOAL_BINARY,
          SHOAL_SOURCE_DIR "/scripts/netns-cluster",
          "1",
          secret,
          "--",
          SHOAL_BINARY,
          "pod",
          "up",
          spec};
}

// Median µs per page over `runs`, or -1 when a run failed.
double measure(const Variant& v, const std::string& workload, uint64_t pages, double hz, int runs) {
  std::vector<double> us;
  const std::regex cycles_re("cycles=([0-9]+)");
  for (int i = 0; i < runs; ++i) {
    std::vector<std::string> argv = {SHOAL_BINARY, "run",    "--kernel",    SHOAL_TEST_GUEST,
                                     "--memory",   "512M",   "--vcpus",     "1",
                                     "--cmdline",  workload, "--log-level", "warn"};
    argv.insert(argv.end(), v.flags.begin(), v.flags.end());
    if (v.pod) argv = pod_argv(workload);
    auto r = run_process(argv, std::chrono::seconds(300));
    std::smatch m;
    if (r.exit_code != 0 || !std::regex_search(r.out, m, cycles_re)) {
      std::fprintf(stderr, "%s %s failed: %s%s\n", v.name, workload.c_str(), r.out.c_str(),
                   r.err.c_str());
      return -1;
    }
    us.push_back(std::stod(m[1]) / hz * 1e6 / static_cast<double>(pages));
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int runs = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json")
      json = true;
    else
      runs = std::atoi(argv[i]);
  }
  const uint64_t mib = 128, pages = mib * 256;
  const double hz = tsc_hz();
  const std::vector<Variant> variants = {
      {"prefaulted (lower bound)", {"--prefault"}},
      {"kernel first touch", {"--fault-serving", "kernel"}},
      {"uffd COPY, 1 page/fault", {"--fault-serving", "single-copy"}},
      {"pool MOVE, 1 page/fault",
       {"--fault-serving", "single-move", "--zero-pool", "256M", "--zero-pool-ready"}},
      // The pool's steady state: full when the burst comes (its watermarks keep it so).
      {"shoal: pool + batches", {"--zero-pool", "256M", "--zero-pool-ready"}},
      // Defaults, cold: the 64 MiB pool still filling while the guest touches 128 MiB.
      {"shoal: default pool, cold", {}},
      // A pod member's own dormant pages (a pod of one), defaults: compare with the row above.
      {"pod member: default pool, cold", {}, true},
  };
  const bool pod_ok = geteuid() == 0;
  if (!json)
    std::printf("first touch of %llu MiB at CPL3, 1 vCPU, median of %d runs (TSC %.0f MHz)\n",
                static_cast<unsigned long long>(mib), runs, hz / 1e6);
  else
    std::printf("{\"bench\":\"faults\",\"mib\":%llu,\"runs\":%d",
                static_cast<unsigned long long>(mib), runs);
  int status = 0;
  for (const char* pattern : {"touch", "touch-random"}) {
    const std::string workload = std::string(pattern) + " " + std::to_string(mib);
    std::vector<double> us;
    for (const auto& v : variants)
      us.push_back(v.pod && !pod_ok ? -2 : measure(v, workload, pages, hz, runs));
    if (json) {
      // One object: pattern -> variant -> µs per page (-1: failed).
      std::printf(",\"%s\":{", std::string(pattern) == "touch" ? "sequential" : "random");
      for (size_t i = 0; i < variants.size(); ++i) {
        std::printf("%s\"%s\":%.3f", i ? "," : "", variants[i].name, us[i]);
        if (us[i] == -1) status = 1;
      }
      std::printf("}");
      continue;
    }
    std::printf("\n%s\n%-30s %8s %14s %14s\n",
                std::string(pattern) == "touch" ? "sequential" : "random", "", "us/page",
                "vs prefaulted", "vs kernel");
    for (size_t i = 0; i < variants.size(); ++i) {
      if (us[i] == -2) {
        std::printf("%-30s skipped: needs root (ip netns)\n", variants[i].name);
        continue;
      }
      if (us[i] < 0) {
        std::printf("%-30s %8s\n", variants[i].name, "failed");
        status = 1;
        continue;
      }
      std::printf("%-30s %8.2f %13.2fx %13.2fx", variants[i].name, us[i], us[i] / us[0],
                  us[i] / us[1]);
      if (variants[i].pod && us[i - 1] > 0)
        std::printf("   %.2fx the single host's", us[i] / us[i - 1]);
      std::printf("\n");
    }
  }
  if (json) std::printf("}\n");
  return status;
}

// Time from process start to the guest's first serial output, for 1 GiB, 64 GiB and 1 TiB of
// declared guest memory, shoal against QEMU booting the same test guest ELF, in one run.
// The guest's first output comes after its ring-0 prologue and platform discovery (< 1 ms of
// guest work); everything before that is the VMM (and, for QEMU, its firmware).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace {

using shoal::test::run_process;

constexpr const char* kMarker = "shoal-guest: hello";

struct Measurement {
  double median_ms = -1;  // -1: did not boot
  std::string failure;
};

// One start-up: ms to the marker, or -1 with `failure` set.
double once(const std::vector<std::string>& argv, std::string& failure) {
  auto r = run_process(argv, std::chrono::seconds(120), kMarker);
  if (r.stopped_early) return r.seconds_to_stop_at * 1000;
  failure = r.err.substr(0, r.err.find('\n'));
  if (failure.empty()) failure = r.timed_out ? "timed out" : "no output";
  return -1;
}

// Runs every command `runs` times, round-robin (so drift in the machine's load spreads over all
// of them rather than biasing one), and returns each one's median.
std::vector<Measurement> measure(const std::vector<std::vector<std::string>>& commands, int runs) {
  std::vector<std::vector<double>> ms(commands.size());
  std::vector<Measurement> out(commands.size());
  for (int i = 0; i < runs; ++i)
    for (size_t c = 0; c < commands.size(); ++c) {
      if (!out[c].failure.empty()) continue;
      const double t = once(commands[c], out[c].failure);
      if (t >= 0) ms[c].push_back(t);
    }
  for (size_t c = 0; c < commands.size(); ++c) {
    if (!out[c].failure.empty() || ms[c].empty()) continue;
    std::sort(ms[c].begin(), ms[c].end());
    out[c].median_ms = ms[c][ms[c].size() / 2];
  }
  return out;
}

std::string cell(const Measurement& m) {
  char b[64];
  if (m.median_ms < 0) return "failed";
  std::snprintf(b, sizeof b, "%.1f ms", m.median_ms);
  return b;
}

std::string ratio(const Measurement& a, const Measurement& b) {
  if (a.median_ms < 0 || b.median_ms <= 0) return "-";
  char s[32];
  std::snprintf(s, sizeof s, "%.2fx", a.median_ms / b.median_ms);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const int shoal_runs = argc > 1 ? std::atoi(argv[1]) : 7;
  const int qemu_runs = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::vector<std::string> sizes = {"1G", "64G", "1T"};
  std::vector<std::vector<std::string>> shoal_cmds, qemu_cmds;
  for (const auto& size : sizes) {
    shoal_cmds.push_back({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", size,
                          "--cmdline", "hello", "--log-level", "warn"});
    // reserve=off: QEMU's RAM unaccounted like shoal's (MAP_NORESERVE), or 64G fails on a
    // small host; phys-bits=48: QEMU's default 40 bits cannot address 1 TiB.
    qemu_cmds.push_back({"/usr/bin/qemu-system-x86_64",
                         "-accel",
                         "kvm",
                         "-cpu",
                         "qemu64,phys-bits=48",
                         "-m",
                         size,
                         "-object",
                         "memory-backend-ram,id=ram,reserve=off,size=" + size,
                         "-machine",
                         "memory-backend=ram",
                         "-kernel",
                         SHOAL_TEST_GUEST,
                         "-append",
                         "hello",
                         "-display",
                         "none",
                         "-serial",
                         "stdio",
                         "-monitor",
                         "none",
                         "-no-reboot",
                         "-device",
                         "isa-debug-exit,iobase=0x501,iosize=2"});
  }
  // One unmeasured round first: page cache, binaries and KVM module state warm for everyone.
  measure(shoal_cmds, 1);
  const std::vector<Measurement> shoal = measure(shoal_cmds, shoal_runs);
  const std::vector<Measurement> qemu = measure(qemu_cmds, qemu_runs);
  std::printf("start-up to the guest's first output (median of %d shoal / %d QEMU runs)\n",
              shoal_runs, qemu_runs);
  std::printf("%-7s %12s %14s %12s %16s\n", "memory", "shoal", "vs shoal 1G", "QEMU",
              "QEMU / shoal");
  for (size_t i = 0; i < sizes.size(); ++i)
    std::printf("%-7s %12s %14s %12s %16s\n", sizes[i].c_str(), cell(shoal[i]).c_str(),
                ratio(shoal[i], shoal[0]).c_str(), cell(qemu[i]).c_str(),
                ratio(qemu[i], shoal[i]).c_str());
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!shoal[i].failure.empty())
      std::printf("shoal %s: %s\n", sizes[i].c_str(), shoal[i].failure.c_str());
    if (!qemu[i].failure.empty())
      std::printf("QEMU %s: %s\n", sizes[i].c_str(), qemu[i].failure.c_str());
  }
  return shoal[0].median_ms < 0 ? 1 : 0;
}

// Start-up of the bundled test guest's `hello` (it prints one line and exits), shoal against
// QEMU in one run, for 1 GiB, 64 GiB and 1 TiB of declared guest memory:
// - whole process: fork to exit, the figure a user waits for;
// - to the guest: fork to shoal's "vCPUs started" (the first KVM_RUN follows within a thread
//   start), and for everyone fork to the guest's first serial line.
// The baseline is QEMU's fastest configuration for this guest: `-M microvm` without option
// ROMs, RTC or default devices, with the qboot firmware, booting the same PVH ELF. QEMU's `pc`
// machine (SeaBIOS) is the last column, for reference only.
//   startup [--json] [SHOAL_RUNS [QEMU_RUNS]]
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace {

using shoal::test::ProcessResult;
using shoal::test::run_process;

constexpr const char* kHello = "shoal-guest: hello";
constexpr const char* kVcpusStarted = "startup: vCPUs started";
constexpr const char* kQboot = "/usr/share/qemu/qboot.rom";

struct Samples {
  std::vector<double> whole_ms, to_mark_ms;  // the mark: Command::mark
  std::string failure;
};

struct Command {
  std::string name;
  std::vector<std::string> argv;
  const char* mark;  // what "to the guest" waits for
};

void once(const Command& c, Samples& s) {
  ProcessResult r = run_process(c.argv, std::chrono::seconds(120), "", c.mark);
  if (r.timed_out || r.out.find(kHello) == std::string::npos) {
    s.failure = r.timed_out ? "timed out" : r.err.substr(0, r.err.find('\n'));
    if (s.failure.empty()) s.failure = "no hello (exit " + std::to_string(r.exit_code) + ")";
    return;
  }
  s.whole_ms.push_back(r.seconds * 1000);
  if (r.seconds_to_mark >= 0) s.to_mark_ms.push_back(r.seconds_to_mark * 1000);
}

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<std::string> qemu(const std::string& machine, const std::string& size) {
  // reserve=off: QEMU's RAM unaccounted like shoal's (MAP_NORESERVE), or 64G fails on a small
  // host; phys-bits=48: QEMU's default 40 bits cannot address 1 TiB.
  std::vector<std::string> a = {"/usr/bin/qemu-system-x86_64",
                                "-accel",
                                "kvm",
                                "-cpu",
                                "qemu64,phys-bits=48",
                                "-m",
                                size,
                                "-object",
                                "memory-backend-ram,id=ram,reserve=off,size=" + size,
                                "-machine",
                                machine + ",memory-backend=ram",
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
                                "-no-user-config",
                                "-device",
                                "isa-debug-exit,iobase=0x501,iosize=2"};
  if (machine != "pc") {
    a.push_back("-nodefaults");
    // qboot, the minimal firmware microvm was made for: QEMU 10's default for microvm is a
    // SeaBIOS build whose real-mode start runs emulated on a nested host and never reached
    // the guest within 60 s here. With qboot QEMU 10 runs `hello` at 1 GiB in ~95 ms.
    if (::access(kQboot, R_OK) == 0) {
      a.push_back("-bios");
      a.push_back(kQboot);
    }
  }
  return a;
}

std::string ms(double v) {
  char b[32];
  if (v < 0) return "-";
  std::snprintf(b, sizeof b, "%.1f ms", v);
  return b;
}

std::string ratio(double a, double b) {
  char s[32];
  if (a < 0 || b <= 0) return "-";
  std::snprintf(s, sizeof s, "%.2fx", a / b);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  std::vector<int> counts;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0)
      json = true;
    else
      counts.push_back(std::atoi(argv[i]));
  }
  const int shoal_runs = counts.size() > 0 ? counts[0] : 9;
  const int qemu_runs = counts.size() > 1 ? counts[1] : 5;
  const std::vector<std::string> sizes = {"1G", "64G", "1T"};
  const std::string microvm = "microvm,x-option-roms=off,rtc=off";
  std::vector<Command> commands;
  for (const auto& size : sizes) {
    commands.push_back({"shoal " + size,
                        {SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", size,
                         "--cmdline", "hello", "--log-level", "debug"},
                        kVcpusStarted});
    commands.push_back({"microvm " + size, qemu(microvm, size), kHello});
    commands.push_back({"pc " + size, qemu("pc", size), kHello});
  }
  std::vector<Samples> samples(commands.size());
  // One unmeasured round first (page cache, binaries and KVM warm for everyone), then
  // round-robin, so drift in the machine's load spreads over every command.
  for (size_t c = 0; c < commands.size(); ++c) {
    Samples warm;
    once(commands[c], warm);
  }
  for (int i = 0; i < std::max(shoal_runs, qemu_runs); ++i)
    for (size_t c = 0; c < commands.size(); ++c) {
      const bool is_shoal = c % 3 == 0;
      if (i >= (is_shoal ? shoal_runs : qemu_runs) || !samples[c].failure.empty()) continue;
      once(commands[c], samples[c]);
    }

  if (json) {
    std::printf("{\"bench\":\"startup\",\"shoal_runs\":%d,\"qemu_runs\":%d,\"sizes\":[", shoal_runs,
                qemu_runs);
    for (size_t s = 0; s < sizes.size(); ++s) {
      const Samples &sh = samples[3 * s], &mv = samples[3 * s + 1], &pc = samples[3 * s + 2];
      std::printf(
          "%s{\"memory\":\"%s\",\"shoal_whole_ms\":%.2f,\"shoal_to_vcpus_ms\":%.2f,"
          "\"microvm_whole_ms\":%.2f,\"microvm_to_hello_ms\":%.2f,\"pc_whole_ms\":%.2f,"
          "\"shoal_over_microvm\":%.3f}",
          s ? "," : "", sizes[s].c_str(), median(sh.whole_ms), median(sh.to_mark_ms),
          median(mv.whole_ms), median(mv.to_mark_ms), median(pc.whole_ms),
          median(mv.whole_ms) > 0 ? median(sh.whole_ms) / median(mv.whole_ms) : -1.0);
    }
    std::printf("]}\n");
  } else {
    std::printf("start-up of the test guest's hello (median of %d shoal / %d QEMU runs)\n",
                shoal_runs, qemu_runs);
    std::printf("%-6s %14s %14s %16s %14s %16s %12s\n", "memory", "shoal whole", "shoal to vCPU",
                "microvm whole", "microvm hello", "shoal / microvm", "pc whole");
    for (size_t s = 0; s < sizes.size(); ++s) {
      const Samples &sh = samples[3 * s], &mv = samples[3 * s + 1], &pc = samples[3 * s + 2];
      std::printf("%-6s %14s %14s %16s %14s %16s %12s\n", sizes[s].c_str(),
                  ms(median(sh.whole_ms)).c_str(), ms(median(sh.to_mark_ms)).c_str(),
                  ms(median(mv.whole_ms)).c_str(), ms(median(mv.to_mark_ms)).c_str(),
                  ratio(median(sh.whole_ms), median(mv.whole_ms)).c_str(),
                  ms(median(pc.whole_ms)).c_str());
    }
  }
  int rc = 0;
  for (size_t c = 0; c < commands.size(); ++c)
    if (!samples[c].failure.empty()) {
      std::fprintf(stderr, "%s: %s\n", commands[c].name.c_str(), samples[c].failure.c_str());
      if (c % 3 == 0) rc = 1;
    }
  return rc;
}

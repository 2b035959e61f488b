// Boot time of a Linux guest: shoal against QEMU's fastest machine (microvm) and its PC
// machine (q35), the same kernel and initramfs, all with -accel kvm, in one invocation.
// Two figures per configuration, from process start: the guest's first userspace line
// (scripts/guest-initramfs prints it) and the process's exit after the guest powers itself
// off (the kernel parameter guest_action=poweroff). Meant for hosts with hardware
// virtualization, such as the emulated test machine (scripts/test-vm --with-qemu); there the
// absolute times are TCG's, so read the ratios.
//   linux_boot [--json] [--runs N] [--kernel-dir DIR] [--initrd FILE] [--qemu PATH]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace {

using shoal::test::run_process;

constexpr const char* kUserspaceLine = "shoal-guest: userspace up";
constexpr const char* kCmdline = "console=ttyS0 guest_action=poweroff";

struct Config {
  std::string name;
  std::vector<std::string> argv;
};

struct Result {
  std::vector<double> to_userspace_ms, to_exit_ms;
  std::string failure;
  double median(std::vector<double> v) const {
    if (v.empty()) return -1;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

void once(const Config& c, Result& r) {
  auto p = run_process(c.argv, std::chrono::seconds(600), "", kUserspaceLine);
  if (p.exit_code != 0 || p.seconds_to_mark < 0) {
    const std::string& text = p.err.empty() ? p.out : p.err;
    r.failure = p.timed_out ? "timed out"
                            : "exit " + std::to_string(p.exit_code) + ": " +
                                  text.substr(0, text.find('\n'));
    return;
  }
  r.to_userspace_ms.push_back(p.seconds_to_mark * 1000);
  r.to_exit_ms.push_back(p.seconds * 1000);
}

std::string ms(double v) {
  if (v < 0) return "failed";
  char b[32];
  std::snprintf(b, sizeof b, "%.0f ms", v);
  return b;
}

std::string ratio(double a, double b) {
  if (a < 0 || b <= 0) return "-";
  char s[32];
  std::snprintf(s, sizeof s, "%.2fx", a / b);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int runs = 3;
  std::string dir = SHOAL_LINUX_DIR, initrd = SHOAL_GUEST_INITRAMFS,
              qemu = "/usr/bin/qemu-system-x86_64";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--json")
      json = true;
    else if (a == "--runs" && has_value)
      runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--kernel-dir" && has_value)
      dir = argv[++i];
    else if (a == "--initrd" && has_value)
      initrd = argv[++i];
    else if (a == "--qemu" && has_value)
      qemu = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: linux_boot [--json] [--runs N] [--kernel-dir DIR] "
                   "[--initrd FILE] [--qemu PATH]\n");
      return 2;
    }
  }
  const std::string bz = dir + "/bzImage", elf = dir + "/vmlinux";
  auto shoal = [&](const std::string& kernel) {
    return std::vector<std::string>{SHOAL_BINARY, "run",     "--kernel",    kernel,     "--initrd",
                                    initrd,       "--vcpus", "2",           "--memory", "512M",
                                    "--cmdline",  kCmdline,  "--log-level", "warn"};
  };
  // QEMU: the same vCPUs and RAM, serial console on stdio, nothing else; microvm as the
  // project's start-up benchmark configures it (no option ROMs, no RTC), q35 with defaults
  // off. Both power off through ACPI and exit.
  auto qemu_cmd = [&](const std::string& machine) {
    return std::vector<std::string>{qemu,
                                    "-M",
                                    machine,
                                    "-accel",
                                    "kvm",
                                    "-cpu",
                                    "host",
                                    "-smp",
                                    "2",
                                    "-m",
                                    "512M",
                                    "-nodefaults",
                                    "-no-user-config",
                                    "-display",
                                    "none",
                                    "-serial",
                                    "stdio",
                                    "-no-reboot",
                                    "-kernel",
                                    bz,
                                    "-initrd",
                                    initrd,
                                    "-append",
                                    kCmdline};
  };
  const std::vector<Config> configs = {
      {"shoal vmlinux (PVH)", shoal(elf)},
      {"shoal bzImage", shoal(bz)},
      {"QEMU microvm bzImage", qemu_cmd("microvm,x-option-roms=off,rtc=off")},
      {"QEMU q35 bzImage", qemu_cmd("q35")},
  };
  std::vector<Result> results(configs.size());
  // Round-robin, so drift in the machine's speed spreads over every configuration.
  for (int i = 0; i < runs; ++i)
    for (size_t c = 0; c < configs.size(); ++c)
      if (results[c].failure.empty()) once(configs[c], results[c]);

  const double base_user = results[2].median(results[2].to_userspace_ms);
  const double base_exit = results[2].median(results[2].to_exit_ms);
  if (json) {
    std::printf("{\"runs\":%d,\"configs\":[", runs);
    for (size_t c = 0; c < configs.size(); ++c) {
      const Result& r = results[c];
      std::printf(
          "%s{\"name\":\"%s\",\"to_userspace_ms\":%.1f,\"to_exit_ms\":%.1f,"
          "\"failure\":\"%s\"}",
          c ? "," : "", configs[c].name.c_str(), r.median(r.to_userspace_ms),
          r.median(r.to_exit_ms), r.failure.c_str());
    }
    std::printf("]}\n");
  } else {
    std::printf("Linux boot, 2 vCPUs, 512 MiB, median of %d runs; ratio = time / QEMU microvm's\n",
                runs);
    std::printf("%-22s %16s %8s %16s %8s\n", "configuration", "to userspace", "ratio",
                "to power-off", "ratio");
    for (size_t c = 0; c < configs.size(); ++c) {
      const Result& r = results[c];
      const double u = r.median(r.to_userspace_ms), e = r.median(r.to_exit_ms);
      std::printf("%-22s %16s %8s %16s %8s\n", configs[c].name.c_str(), ms(u).c_str(),
                  ratio(u, base_user).c_str(), ms(e).c_str(), ratio(e, base_exit).c_str());
    }
    for (size_t c = 0; c < configs.size(); ++c)
      if (!results[c].failure.empty())
        std::printf("%s: %s\n", configs[c].name.c_str(), results[c].failure.c_str());
  }
  return results[0].failure.empty() && results[1].failure.empty() ? 0 : 1;
}

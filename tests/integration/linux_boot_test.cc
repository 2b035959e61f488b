// A real Linux kernel no one here wrote: Debian's cloud kernel, fetched by scripts/setup, as a
// bzImage (64-bit boot protocol) and as vmlinux (PVH). On this nested KVM its ring 0 runs
// emulated, so the test follows it as far as it reliably gets: the banner, the e820 map
// (which must equal the one shoal built), the CPUs from the ACPI MADT, and the serial console.
#include <gtest/gtest.h>
#include <unistd.h>

#include <regex>
#include <set>

#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

// Lines after "BIOS-e820: " in Linux's output, or after "e820: " in shoal's debug log.
std::set<std::string> e820_lines(const std::string& text, const std::string& prefix) {
  std::set<std::string> lines;
  const std::regex re(prefix + R"((\[mem 0x[0-9a-f]+-0x[0-9a-f]+\] (usable|reserved)))");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it)
    lines.insert((*it)[1]);
  return lines;
}

void boot_linux(const std::string& kernel) {
  SHOAL_REQUIRE_KVM();
  const std::string path = std::string(SHOAL_LINUX_DIR) + "/" + kernel;
  if (access(path.c_str(), R_OK) != 0)
    GTEST_SKIP() << "skipped: " << path << " missing; run scripts/setup";
  // The last line this kernel prints reliably here: the 8250 driver taking over the console
  // from earlyprintk (later code hits instructions the nested hypervisor cannot emulate).
  const std::string last_reliable = "printk: console [ttyS0] enabled";
  auto r = run_process({SHOAL_BINARY, "run", "--kernel", path, "--memory", "512M", "--vcpus", "2",
                        "--cmdline", "console=ttyS0 earlyprintk=serial", "--log-level", "debug"},
                       std::chrono::seconds(180), last_reliable);
  ASSERT_NE(r.out.find("Linux version "), std::string::npos)
      << "no banner after " << r.seconds << " s\n"
      << r.out << r.err;
  const auto linux_map = e820_lines(r.out, "BIOS-e820: ");
  const auto shoal_map = e820_lines(r.err, "e820: ");
  EXPECT_EQ(shoal_map.size(), 3u) << r.err;
  EXPECT_EQ(linux_map, shoal_map) << r.out;
  EXPECT_NE(r.out.find("ACPI: Using ACPI (MADT) for SMP configuration information"),
            std::string::npos);
  EXPECT_NE(r.out.find("smpboot: Allowing 2 CPUs"), std::string::npos) << r.out;
  EXPECT_TRUE(r.stopped_early) << "did not reach '" << last_reliable << "' in " << r.seconds
                               << " s:\n"
                               << r.out.substr(r.out.size() > 3000 ? r.out.size() - 3000 : 0)
                               << r.err;
  std::printf("%s: '%s' after %.1f s\n", kernel.c_str(), last_reliable.c_str(),
              r.seconds_to_stop_at);
}

TEST(LinuxBoot, BzImage) {
  boot_linux("bzImage");
}
TEST(LinuxBoot, VmlinuxThroughPvh) {
  boot_linux("vmlinux");
}

}  // namespace
}  // namespace shoal::test

// A real Linux kernel no one here wrote: Debian's cloud kernel, fetched by scripts/setup, as a
// bzImage (64-bit boot protocol) and as vmlinux (PVH). On this nested KVM its ring 0 runs
// emulated, so the test follows it as far as it reliably gets: the banner, the e820 map
// (which must equal the one shoal built), the CPUs from the ACPI MADT, the IOAPIC, the 8250
// serial console, up to FPU setup.
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

constexpr const char* kNestedSafeCmdline = "clearcpuid=xsave,avx,smap,cx16,pcid,invpcid,fsgsbase";

// How far a boot is followed: through FPU setup (~35 s here, the console and APIC checks
// included), or only to the CPUs from the MADT (~4 s), for an entry path whose difference from
// the other ends long before that.
enum class Depth { kFpuSetup, kCpus };

void boot_linux(const std::string& kernel, Depth depth) {
  SHOAL_REQUIRE_KVM();
  const std::string path = std::string(SHOAL_LINUX_DIR) + "/" + kernel;
  if (access(path.c_str(), R_OK) != 0)
    GTEST_SKIP() << "skipped: " << path << " missing; run scripts/setup";
  // The last line this kernel prints reliably here: FPU setup, just before the int3 self-test
  // that the nested hypervisor's emulator cannot run. clearcpuid= keeps Linux off the other
  // instructions that emulator lacks (XSAVE family, CMPXCHG16B, CLAC/STAC, INVPCID, WRFSBASE);
  // on this host KVM_SET_CPUID2 cannot hide them (docs/linux-boot.md).
  const std::string last_reliable =
      depth == Depth::kFpuSetup ? "x86/fpu: x87 FPU will use FXSAVE" : "smpboot: Allowing 2 CPUs";
  auto r = run_process(
      {SHOAL_BINARY, "run", "--kernel", path, "--memory", "512M", "--vcpus", "2", "--cmdline",
       "console=ttyS0 earlyprintk=serial " + std::string(kNestedSafeCmdline), "--log-level",
       "debug"},
      std::chrono::seconds(300), last_reliable, "BIOS-e820: ");
  ASSERT_NE(r.out.find("Linux version "), std::string::npos)
      << "no banner after " << r.seconds << " s\n"
      << r.out << r.err;
  // The banner and the e820 map within 3 minutes (the rest, emulated, may take longer).
  EXPECT_GE(r.seconds_to_mark, 0);
  EXPECT_LT(r.seconds_to_mark, 180) << "e820 map only after " << r.seconds_to_mark << " s";
  const auto linux_map = e820_lines(r.out, "BIOS-e820: ");
  const auto shoal_map = e820_lines(r.err, "e820: ");
  EXPECT_EQ(shoal_map.size(), 3u) << r.err;
  EXPECT_EQ(linux_map, shoal_map) << r.out;
  EXPECT_NE(r.out.find("ACPI: Using ACPI (MADT) for SMP configuration information"),
            std::string::npos);
  EXPECT_NE(r.out.find("smpboot: Allowing 2 CPUs"), std::string::npos) << r.out;
  if (depth == Depth::kFpuSetup) {
    // The 8250 driver probed our UART (scratch, loopback, FIFO) and took the console over.
    EXPECT_NE(r.out.find("printk: console [ttyS0] enabled"), std::string::npos);
    EXPECT_NE(r.out.find("APIC: Switch to symmetric I/O mode setup"), std::string::npos);
  }
  EXPECT_TRUE(r.stopped_early) << "did not reach '" << last_reliable << "' in " << r.seconds
                               << " s:\n"
                               << r.out.substr(r.out.size() > 3000 ? r.out.size() - 3000 : 0)
                               << r.err;
  std::printf("%s: e820 map after %.1f s, '%s' after %.1f s\n", kernel.c_str(), r.seconds_to_mark,
              last_reliable.c_str(), r.seconds_to_stop_at);
}

TEST(LinuxBoot, BzImage) {
  boot_linux("bzImage", Depth::kFpuSetup);
}
TEST(LinuxBoot, VmlinuxThroughPvh) {
  // PVH differs from the 64-bit boot protocol in the entry and the boot information (start
  // info, e820 from shoal's table): the banner, the map and the MADT show both worked.
  boot_linux("vmlinux", Depth::kCpus);
}

}  // namespace
}  // namespace shoal::test

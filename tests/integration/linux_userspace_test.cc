// Debian's cloud kernel under shoal, all the way to a shell a person can use: the guest
// initramfs (scripts/guest-initramfs) on the serial console, driven through a pseudo-terminal.
// Needs hardware virtualization (VT-x/AMD-V seen by the host that runs shoal): on this
// project's nested development machines the guest's ring 0 cannot run, so these tests skip
// there and run inside the emulated test machine instead (scripts/test-vm; ctest's TestVm.*).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>
#include <tuple>

#include "support/kvm_available.hpp"
#include "support/pty_session.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;

std::string kernel_path(const std::string& name) {
  return std::string(SHOAL_LINUX_DIR) + "/" + name;
}

std::unique_ptr<PtySession> boot(const std::string& kernel, int vcpus,
                                 std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {SHOAL_BINARY, "run",
                                   "--kernel",   kernel,
                                   "--initrd",   SHOAL_GUEST_INITRAMFS,
                                   "--vcpus",    std::to_string(vcpus),
                                   "--memory",   "512M",
                                   "--cmdline",  "console=ttyS0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return PtySession::spawn(argv);
}

// The line the initramfs prints once userspace runs, then the shell's prompt.
constexpr auto kBootTimeout = 180s;  // ~10 s in the emulated test machine (TCG)
constexpr auto kCommandTimeout = 60s;
constexpr const char* kPrompt = "~ # ";

void expect_shell(PtySession& s, int vcpus) {
  ASSERT_TRUE(
      s.expect("shoal-guest: userspace up, " + std::to_string(vcpus) + " cpus", kBootTimeout))
      << s.output() << "\n"
      << s.threads();
  ASSERT_TRUE(s.expect(kPrompt, kCommandTimeout)) << s.output();
}

// Types `command` and waits for `answer` (which the typed line itself must not contain). The
// guest ends lines with CR LF, and the host pty adds its own CR: match up to the first CR.
void ask(PtySession& s, const std::string& command, const std::string& answer) {
  s.send(command + "\n");
  ASSERT_TRUE(s.expect(answer, kCommandTimeout)) << "after `" << command << "`:\n" << s.output();
}

// Powers off and checks that shoal exits 0 within 10 s.
void power_off(PtySession& s) {
  s.send("poweroff\n");
  const auto t0 = std::chrono::steady_clock::now();
  const int code = s.wait_exit(60s);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(code, 0) << s.output();
  EXPECT_LT(seconds, 10.0) << "poweroff to exit\n" << s.output();
}

class LinuxUserspace : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(LinuxUserspace, BootsToTheShellCountsItsCpusAndPowersOff) {
  const auto& [name, vcpus] = GetParam();
  const std::string kernel = kernel_path(name);
  SHOAL_REQUIRE_LINUX_GUEST(std::string(kernel), std::string(SHOAL_GUEST_INITRAMFS));
  auto s = boot(kernel, vcpus);
  ASSERT_TRUE(s);
  ASSERT_NO_FATAL_FAILURE(expect_shell(*s, vcpus));
  ASSERT_NO_FATAL_FAILURE(ask(*s, "echo nproc=$(nproc)", "nproc=" + std::to_string(vcpus) + "\r"));
  power_off(*s);
}

INSTANTIATE_TEST_SUITE_P(KernelsAndVcpus, LinuxUserspace,
                         ::testing::Combine(::testing::Values("vmlinux", "bzImage"),
                                            ::testing::Values(1, 2, 4)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "vcpus";
                         });

TEST(LinuxConsole, InteractiveSessionEchoCpuinfoClockAndRestart) {
  const std::string kernel = kernel_path("vmlinux");
  SHOAL_REQUIRE_LINUX_GUEST(std::string(kernel), std::string(SHOAL_GUEST_INITRAMFS));
  auto s = boot(kernel, 2, {"--on-reboot", "restart"});
  ASSERT_TRUE(s);
  ASSERT_NO_FATAL_FAILURE(expect_shell(*s, 2));
  ASSERT_NO_FATAL_FAILURE(ask(*s, "echo hello-from-the-$((6*7))-guest", "hello-from-the-42-guest"));
  ASSERT_NO_FATAL_FAILURE(
      ask(*s, "echo processors=$(cat /proc/cpuinfo | grep -c processor)", "processors=2\r"));
  // The CMOS clock gives the guest the host's date.
  const std::time_t now = std::time(nullptr);
  tm utc{};
  gmtime_r(&now, &utc);
  ASSERT_NO_FATAL_FAILURE(
      ask(*s, "echo year=$(date -u +%Y)", "year=" + std::to_string(utc.tm_year + 1900)));
  // --on-reboot restart: `reboot` boots the guest again in the same shoal process.
  s->send("reboot\n");
  ASSERT_NO_FATAL_FAILURE(expect_shell(*s, 2));
  ASSERT_NO_FATAL_FAILURE(ask(*s, "echo second-boot-$((1+1))", "second-boot-2"));
  power_off(*s);
}

TEST(LinuxConsole, RebootEndsShoalByDefault) {
  const std::string kernel = kernel_path("vmlinux");
  SHOAL_REQUIRE_LINUX_GUEST(std::string(kernel), std::string(SHOAL_GUEST_INITRAMFS));
  auto s = boot(kernel, 1);
  ASSERT_TRUE(s);
  ASSERT_NO_FATAL_FAILURE(expect_shell(*s, 1));
  s->send("reboot\n");
  EXPECT_EQ(s->wait_exit(60s), 0) << s->output();
  EXPECT_NE(s->output().find("requested a reset"), std::string::npos) << s->output();
}

}  // namespace
}  // namespace shoal::test

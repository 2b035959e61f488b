// Debian's cloud kernel with shoal's channel (--channel: virtio-console with MULTIPORT and one
// port named shoal.channel, on a virtio-mmio transport the DSDT describes as LNRO0005): Linux's
// unmodified virtio_console driver (a module the guest initramfs loads; scripts/fetch-linux
// keeps it) makes the port /dev/vport0p0, not a console, and learns from the device that the
// host side is open. guest_action=chan-check writes 16 KiB of random bytes to it and reads back
// what a peer on the host's socket (a thread here) echoes; the two SHA-256 sums must match,
// and the peer must have echoed exactly 16 KiB.
// Needs hardware virtualization like the other Linux guest tests (linux_userspace_test.cc):
// here that is the emulated test machine (scripts/test-vm; ctest's TestVm.LinuxUserspace).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "support/echo_peer.hpp"
#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

const std::string kKernel = std::string(SHOAL_LINUX_DIR) + "/vmlinux";
// scripts/fetch-linux keeps the virtio modules here; scripts/guest-initramfs packs them.
const std::string kModules = std::string(SHOAL_LINUX_DIR) + "/modules/order";
const std::string kConsoleModule = std::string(SHOAL_LINUX_DIR) + "/modules/virtio_console.ko";
constexpr uint64_t kBytes = 16384;  // what chan-check sends (scripts/guest-initramfs)

// The output's last 4000 characters, for failure messages.
void expect_line(const ProcessResult& r, const std::string& text) {
  EXPECT_NE(r.out.find(text), std::string::npos) << "no '" << text << "' in:\n" << output_tail(r);
}

class LinuxChannel : public ::testing::Test {
 protected:
  void SetUp() override {
    SHOAL_REQUIRE_LINUX_GUEST(kKernel, std::string(SHOAL_GUEST_INITRAMFS), kModules,
                              kConsoleModule);
  }
};

TEST_F(LinuxChannel, ANamedPortGetsBackExactlyTheBytesItSentThroughAHostPeer) {
  const std::string sock = ::testing::TempDir() + "shoal-linux-chan-" + std::to_string(::getpid());
  uint64_t echoed = 0;
  std::thread peer([&] { echoed = echo_peer(sock); });
  // ~25 s in the emulated test machine (TCG).
  const ProcessResult r = run_process(
      {SHOAL_BINARY, "run", "--kernel", kKernel, "--initrd", SHOAL_GUEST_INITRAMFS, "--vcpus", "2",
       "--memory", "512M", "--cmdline", "console=ttyS0 guest_action=chan-check", "--channel", sock},
      std::chrono::seconds(240));
  peer.join();  // shoal's exit closes the socket: the peer's read ends
  ASSERT_EQ(r.exit_code, 0) << "timed out " << r.timed_out << "\n" << output_tail(r);
  // The guest's own verdict first: on failure its "FAILED: ..." line says where it stopped.
  ASSERT_NE(r.out.find("shoal-guest: chan-check passed"), std::string::npos) << output_tail(r);
  // The transport from the DSDT bound by virtio-mmio, the device (ID 3) by virtio_console.
  expect_line(r, "chan-check: acpi LNRO0005:00 -> platform LNRO0005:00, driver virtio-mmio");
  expect_line(r, "chan-check: virtio0: device 0x0003, driver virtio_console");
  expect_line(r, "chan-check: port vport0p0: name 'shoal.channel'");
  expect_line(r, "chan-check: vport0p0: host_connected: 1");
  expect_line(r, "chan-check: /dev/vport0p0 open");
  expect_line(r, "IO-APIC 16-edge virtio0");  // interrupts through GSI 16
  std::smatch sent;
  ASSERT_TRUE(std::regex_search(r.out, sent,
                                std::regex("chan-check: sending " + std::to_string(kBytes) +
                                           R"( bytes, sha256 ([0-9a-f]{64}))")))
      << output_tail(r);
  std::smatch received;
  ASSERT_TRUE(std::regex_search(r.out, received,
                                std::regex("chan-check: received " + std::to_string(kBytes) +
                                           R"( bytes, sha256 ([0-9a-f]{64}))")))
      << output_tail(r);
  EXPECT_EQ(received[1], sent[1]);
  expect_line(r, "chan-check: checksums match");
  // Every byte the guest wrote reached the peer once, nothing more (a port is no tty: no echo
  // of the peer's bytes, no CR added before NL).
  EXPECT_EQ(echoed, kBytes);
  EXPECT_NE(::access(sock.c_str(), F_OK), 0) << "shoal leaves no socket behind";
  std::printf("chan-check boot %.1f s, %llu bytes echoed\n", r.seconds,
              static_cast<unsigned long long>(echoed));
}

}  // namespace
}  // namespace shoal::test

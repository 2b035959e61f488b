// Debian's cloud kernel across two hosts: a 2-host pod with one vCPU per host (netns hosts in
// one machine), the guest's memory split evenly between them. Linux's SMP bring-up starts the
// second CPU on the other host (INIT and SIPI across the mesh, docs/interrupts.md), and
// guest_action=cpu-check (scripts/guest-initramfs) runs a userspace loop pinned to each CPU
// (taskset), checks each ran where it was pinned and powers off. The kernel's page tables,
// which both CPUs walk, are write-shared between the hosts (docs/coherence.md, "Hold time"),
// so the boot is slow: in the emulated test machine (scripts/test-vm --npt 1, TCG) minutes,
// with a pageHold of 20ms for TCG's page moves of milliseconds. Needs hardware-style
// virtualization like the other Linux guest tests (TestVm.LinuxAcrossHosts, opt-in).
// Two more have Linux read host 0's disk from a CPU on the other host.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/kvm_available.hpp"
#include "support/pod_cluster.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

const std::string kKernel = std::string(SHOAL_LINUX_DIR) + "/vmlinux";
// scripts/fetch-linux keeps the virtio modules here; scripts/guest-initramfs packs them.
const std::string kModules = std::string(SHOAL_LINUX_DIR) + "/modules/order";

// A 2-host pod, vCPU 0 on h0 and vCPU 1 on h1, booting with guest_action=cpu-check.
std::string across_spec(const std::string& name, const std::string& placement) {
  return write_temp_file(name + ".yaml",
                         "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: " + name +
                             "}\nspec:\n"
                             "  guest: {kernel: " +
                             kKernel +
                             ", initrd: " SHOAL_GUEST_INITRAMFS
                             ", cmdline: \"console=ttyS0 guest_action=cpu-check\"}\n"
                             "  memory: 512M\n  vcpus: 2\n  pageHold: 20ms\n  placement: " +
                             placement + "\n  secretFile: " + pod_secret() +
                             "\n  failureTimeout: 10s\n  hosts:\n" +
                             "    - {name: h0, address: \"127.77.0.1:7100\", vcpus: [0], memory: "
                             "even, zeroPool: 16M}\n"
                             "    - {name: h1, address: \"127.77.0.2:7100\", vcpus: [1], memory: "
                             "even, zeroPool: 16M}\n");
}

// The lines of r.out that contain any of `marks`, for the test's log.
void print_lines(const ProcessResult& r, std::initializer_list<const char*> marks) {
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);)
    for (const char* m : marks)
      if (line.find(m) != std::string::npos) {
        std::printf("  %s\n", line.c_str());
        break;
      }
}

void expect_cpu_check(const ProcessResult& r) {
  EXPECT_EQ(r.exit_code, 0) << output_tail(r, 6000);
  for (const char* line :
       {"smp: Brought up 1 node, 2 CPUs", "shoal-guest: userspace up, 2 cpus",
        "shoal-guest: cpu-check: cpu 0 looped on cpu 0",
        "shoal-guest: cpu-check: cpu 1 looped on cpu 1", "shoal-guest: cpu-check passed"})
    EXPECT_NE(r.out.find(line), std::string::npos) << "no '" << line << "' in:\n"
                                                   << output_tail(r, 6000);
  print_lines(r, {"Brought up", "Run /init", "shoal-guest:", "placement", "move-exit"});
}

TEST(LinuxAcrossHosts, TwoCpusOnTwoHostsBootToTheShellRunALoopEachAndPowerOff) {
  SHOAL_REQUIRE_LINUX_GUEST(kKernel, std::string(SHOAL_GUEST_INITRAMFS));
  SHOAL_REQUIRE_POD_HOSTS();
  const ProcessResult r = in_cluster(2, across_spec("linuxacross", "static"), "$SHOAL pod up $SPEC",
                                     {}, std::chrono::seconds(1500));
  expect_cpu_check(r);
  std::printf("Linux across two hosts: %.1f s to power off\n", r.seconds);
}

// The same with placement auto, and the second CPU moved to host 0 by `pod move` once it is
// online (its state, LAPIC included, goes to h0; h1 keeps a shadow of it for interrupts).
TEST(LinuxAcrossHosts, ACpuMovedToTheOtherHostOnceOnlineGoesOnAndTheGuestFinishes) {
  SHOAL_REQUIRE_LINUX_GUEST(kKernel, std::string(SHOAL_GUEST_INITRAMFS));
  SHOAL_REQUIRE_POD_HOSTS();
  const ProcessResult r = in_cluster(
      2, across_spec("linuxmove", "auto"),
      "out=$(mktemp); $SHOAL pod up $SPEC >$out 2>&1 & up=$!; "
      "for i in $(seq 1200); do grep -q 'Brought up 1 node, 2 CPUs' $out && break; "
      "kill -0 $up 2>/dev/null || break; sleep 1; done; "
      "$SHOAL pod move $SPEC --vcpu 1 --to h0; echo move-exit=$?; "
      "$SHOAL pod status $SPEC | grep -m1 placement; wait $up; rc=$?; cat $out; exit $rc",
      {}, std::chrono::seconds(1500));
  expect_cpu_check(r);
  EXPECT_NE(r.out.find("move-exit=0"), std::string::npos) << output_tail(r, 6000);
  EXPECT_NE(r.out.find("placement 0@h0 1@h0"), std::string::npos) << output_tail(r, 6000);
  std::printf("Linux across two hosts, vCPU 1 moved to h0: %.1f s to power off\n", r.seconds);
}

// Linux drives host 0's disk from a CPU on the other host. CPU 1 ends up on h1, Linux reads
// the first 4 MiB on it (taskset) and compares their checksum with the one the host sends: the
// host writes its sign and the checksum it expects into the disk's sector at 4 MiB, which the
// guest polls with O_DIRECT reads (guest_action=disk-cpu1-read). The requests' notifies are
// forwarded from h1 to h0's device, whose completions reach CPU 1 through h0's shadow of it
// and the mesh, and every ring and buffer page moves between the hosts (docs/devices.md, "In
// a pod"). Linux sets its devices' interrupts up with both CPUs on h0 (a CPU on another host
// would program that host's in-kernel IOAPIC: docs/interrupts.md, "Not yet"), and CPU 1 goes
// to h1 once userspace runs, by `pod move`.
// `from_h1`: CPU 1 comes online on h1 (INIT and SIPI across the mesh) and moves to h0 at once,
// so h1's fd ran it before it comes back. Otherwise both CPUs boot on h0 and h1's fd for CPU 1
// first runs it when it arrives (that path triple-faulted while h1 had no KVM slot for the
// page tables h0 wrote: memory/ram_slots.hpp).
void read_disk_on_cpu1_in_h1(bool from_h1) {
  const std::string image =
      ::testing::TempDir() + "shoal-linux-pod-disk-" + std::to_string(::getpid()) + ".img";
  {
    // 4 MiB that no two runs' checksums could confuse with zeros, then 4 MiB of zeros.
    std::vector<uint8_t> bytes(8u << 20, 0);
    uint64_t x = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(::getpid());
    for (size_t i = 0; i < (4u << 20); ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      bytes[i] = static_cast<uint8_t>(x);
    }
    const int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0) << image;
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  const std::string logs =
      ::testing::TempDir() + "shoal-linux-pod-disk-logs-" + std::to_string(::getpid());
  std::filesystem::create_directories(logs);
  const std::string spec = write_temp_file(
      "linuxpoddisk.yaml",
      "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: linuxpoddisk}\nspec:\n"
      "  guest: {kernel: " +
          kKernel +
          ", initrd: " SHOAL_GUEST_INITRAMFS
          ", cmdline: \"console=ttyS0 guest_action=disk-cpu1-read\"}\n"
          "  memory: 512M\n  vcpus: 2\n  pageHold: 20ms\n  placement: static\n  secretFile: " +
          pod_secret() + "\n  failureTimeout: 10s\n  disks: [\"" + image +
          "\"]\n  hosts:\n"
          "    - {name: h0, address: \"127.77.0.1:7100\", vcpus: " +
          (from_h1 ? "[0]" : "[0, 1]") +
          ", maxVcpus: 2, memory: even, zeroPool: 16M}\n"
          "    - {name: h1, address: \"127.77.0.2:7100\", vcpus: " +
          (from_h1 ? "[1]" : "[]") + ", memory: even, zeroPool: 16M}\n");
  const std::string first_move =
      from_h1 ? "for i in $(seq 1200); do grep -q 'Brought up 1 node, 2 CPUs' $out && break; "
                "kill -0 $up 2>/dev/null || break; sleep 1; done; "
                "$SHOAL pod move $SPEC --vcpu 1 --to h0; echo first-move-exit=$?; "
              : "";
  const ProcessResult r = in_cluster(
      2, spec,
      "img=" + image +
          "; want=$(head -c 4194304 $img | sha256sum | cut -c1-64); "
          "out=$(mktemp); $SHOAL pod up $SPEC >$out 2>&1 & up=$!; " +
          first_move +
          "for i in $(seq 1200); do grep -q 'disk-cpu1-read: ready' $out && break; "
          "kill -0 $up 2>/dev/null || break; sleep 1; done; "
          "$SHOAL pod move $SPEC --vcpu 1 --to h1; echo move-exit=$?; "
          "$SHOAL pod status $SPEC | grep -m1 placement; "
          "printf 'MOVED %s' $want | dd of=$img bs=512 seek=8192 conv=notrunc 2>/dev/null; "
          "wait $up; rc=$?; cat $out; "
          // A failure shows what each host logged last (the cluster's logs die with it).
          "[ $rc = 0 ] || for h in h0 h1; do echo \"== $h's log\"; tail -n 40 $logs/$h.log; "
          "done; exit $rc",
      {"SHOAL_CLUSTER_LOGS=" + logs, "logs=" + logs}, std::chrono::seconds(1500));
  ::unlink(image.c_str());
  std::filesystem::remove_all(logs);
  EXPECT_EQ(r.exit_code, 0) << output_tail(r, 6000);
  std::vector<std::string> lines = {"shoal-guest: userspace up, 2 cpus",
                                    "\nmove-exit=0",
                                    "placement 0@h0 1@h1",
                                    "disk-cpu1-read: read 4 MiB on cpu 1",
                                    "disk-cpu1-read: checksums match",
                                    "shoal-guest: disk-cpu1-read passed"};
  if (from_h1) lines.push_back("first-move-exit=0");
  for (const std::string& line : lines)
    EXPECT_NE(r.out.find(line), std::string::npos) << "no '" << line << "' in:\n"
                                                   << output_tail(r, 6000);
  print_lines(r, {"Run /init", "shoal-guest:", "placement", "move-exit"});
  std::printf("Linux reading host 0's disk from a CPU on host 1: %.1f s to power off\n", r.seconds);
}

TEST(LinuxAcrossHosts, ACpuMovedToTheSecondHostReadsHostZerosDisk) {
  SHOAL_REQUIRE_LINUX_GUEST(kKernel, std::string(SHOAL_GUEST_INITRAMFS), kModules);
  SHOAL_REQUIRE_POD_HOSTS();
  read_disk_on_cpu1_in_h1(/*from_h1=*/true);
}

TEST(LinuxAcrossHosts, ACpuBootedOnHostZeroRunsOnAHostThatNeverRanItAndReadsTheDisk) {
  SHOAL_REQUIRE_LINUX_GUEST(kKernel, std::string(SHOAL_GUEST_INITRAMFS), kModules);
  SHOAL_REQUIRE_POD_HOSTS();
  read_disk_on_cpu1_in_h1(/*from_h1=*/false);
}

}  // namespace
}  // namespace shoal::test

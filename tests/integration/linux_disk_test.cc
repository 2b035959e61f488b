// Debian's cloud kernel with shoal's virtio-blk (--disk, virtio-mmio transports that the DSDT
// describes as LNRO0005 devices): Linux finds the transports through ACPI, loads virtio-blk
// from the guest initramfs (scripts/guest-initramfs; the modules come from scripts/fetch-linux)
// and sees /dev/vda. One boot makes ext4 on it with mkfs.ext4, writes a file and reads it back
// from the disk; a second boot, with the image read-only and a second disk, reads the same
// bytes, and the image file on the host holds an ext4 superblock and is left unchanged.
// Needs hardware virtualization like the other Linux guest tests (linux_userspace_test.cc):
// here that is the emulated test machine (scripts/test-vm; ctest's TestVm.LinuxUserspace).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

const std::string kKernel = std::string(SHOAL_LINUX_DIR) + "/vmlinux";
// scripts/fetch-linux keeps the virtio modules here; scripts/guest-initramfs packs them.
const std::string kModules = std::string(SHOAL_LINUX_DIR) + "/modules/order";
constexpr uint64_t kDiskBytes = 64 << 20;   // /dev/vda: 131072 sectors
constexpr uint64_t kSecondBytes = 8 << 20;  // /dev/vdb: 16384 sectors

std::string make_image(const std::string& name, uint64_t bytes) {
  std::string path =
      ::testing::TempDir() + "shoal-linux-" + name + "-" + std::to_string(::getpid()) + ".img";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  EXPECT_GE(fd, 0) << path;
  EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);  // sparse: reads as zeros
  ::close(fd);
  return path;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

template <typename T>
T read_le(const std::vector<uint8_t>& bytes, size_t offset) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(bytes.at(offset + i)) << (8 * i);
  return v;
}

ProcessResult boot(const std::string& action, const std::vector<std::string>& disks) {
  std::vector<std::string> argv = {
      SHOAL_BINARY, "run",       "--kernel",
      kKernel,      "--initrd",  SHOAL_GUEST_INITRAMFS,
      "--vcpus",    "2",         "--memory",
      "512M",       "--cmdline", "console=ttyS0 guest_action=" + action};
  for (const auto& d : disks) {
    argv.push_back("--disk");
    argv.push_back(d);
  }
  // ~25 s in the emulated test machine (TCG), mkfs.ext4 about 6 s of it.
  return run_process(argv, std::chrono::seconds(240));
}

// The output's last 4000 characters, for failure messages.
void expect_line(const ProcessResult& r, const std::string& text) {
  EXPECT_NE(r.out.find(text), std::string::npos) << "no '" << text << "' in:\n" << output_tail(r);
}

class LinuxDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    SHOAL_REQUIRE_LINUX_GUEST(kKernel, std::string(SHOAL_GUEST_INITRAMFS), kModules);
  }
  void TearDown() override {
    for (const auto& p : images_) ::unlink(p.c_str());
  }
  std::string image(const std::string& name, uint64_t bytes) {
    images_.push_back(make_image(name, bytes));
    return images_.back();
  }
  std::vector<std::string> images_;
};

TEST_F(LinuxDisk, Ext4OnVdaWrittenInOneBootReadsTheSameInTheNext) {
  const std::string disk = image("vda", kDiskBytes);

  // Boot 1: mkfs.ext4 /dev/vda, mount, write 4 MiB, unmount, drop caches, mount, read back.
  const ProcessResult check = boot("disk-check", {disk});
  ASSERT_EQ(check.exit_code, 0) << "disk-check boot: timed out " << check.timed_out << "\n"
                                << output_tail(check);
  // The guest's own verdict first: on failure its "FAILED: ..." line says where it stopped.
  ASSERT_NE(check.out.find("shoal-guest: disk-check passed"), std::string::npos)
      << output_tail(check);
  // The transport from the DSDT bound by virtio-mmio, the disk named by virtio-blk.
  expect_line(check, "disk-check: acpi LNRO0005:00 -> platform LNRO0005:00, driver virtio-mmio");
  expect_line(check, "virtio_blk virtio0: [vda] 131072 512-byte logical blocks");
  expect_line(check, "disk-check: /dev/vda: virtio0, 131072 sectors of 512 bytes, read-only 0");
  expect_line(check, "disk-check: mkfs.ext4 /dev/vda done");
  // "ordered data mode": ext4 with a journal (ext2 would be "without journal").
  expect_line(check, "EXT4-fs (vda): mounted filesystem with ordered data mode");
  expect_line(check, "disk-check: mounted: /dev/vda /mnt ext4 rw");
  expect_line(check, "disk-check: checksums match");
  expect_line(check, "IO-APIC 16-edge virtio0");  // interrupts through GSI 16
  std::smatch wrote;
  ASSERT_TRUE(std::regex_search(
      check.out, wrote,
      std::regex(R"(disk-check: wrote /mnt/data: 4194304 bytes, sha256 ([0-9a-f]{64}))")))
      << output_tail(check);
  std::smatch read_back;
  ASSERT_TRUE(
      std::regex_search(check.out, read_back,
                        std::regex(R"(disk-check: read back /mnt/data: sha256 ([0-9a-f]{64}))")))
      << output_tail(check);
  EXPECT_EQ(read_back[1], wrote[1]);

  // The file on the host: an ext4 superblock at 1024 (magic 0xEF53) with a journal
  // (COMPAT_HAS_JOURNAL) and extents (INCOMPAT_EXTENTS): the guest's writes landed there.
  const std::vector<uint8_t> after_check = read_file(disk);
  ASSERT_EQ(after_check.size(), kDiskBytes);
  EXPECT_EQ(read_le<uint16_t>(after_check, 1024 + 0x38), 0xEF53);
  EXPECT_NE(read_le<uint32_t>(after_check, 1024 + 0x5C) & 0x4, 0u) << "no journal";
  EXPECT_NE(read_le<uint32_t>(after_check, 1024 + 0x60) & 0x40, 0u) << "no extents";

  // Boot 2, a new machine: the same image read-only as vda, a blank second disk as vdb (the
  // second transport, GSI 17). The file reads back with the same checksum.
  const std::string second = image("vdb", kSecondBytes);
  const ProcessResult verify = boot("disk-verify", {disk + ",ro", second});
  ASSERT_EQ(verify.exit_code, 0) << "disk-verify boot: timed out " << verify.timed_out << "\n"
                                 << output_tail(verify);
  ASSERT_NE(verify.out.find("shoal-guest: disk-verify passed"), std::string::npos)
      << output_tail(verify);
  expect_line(verify, "disk-verify: acpi LNRO0005:01 -> platform LNRO0005:01, driver virtio-mmio");
  expect_line(verify, "disk-verify: /dev/vda: virtio0, 131072 sectors of 512 bytes, read-only 1");
  expect_line(verify, "disk-verify: /dev/vdb: virtio1, 16384 sectors of 512 bytes, read-only 0");
  expect_line(verify, "disk-verify: mounted: /dev/vda /mnt ext4 ro");
  expect_line(verify, "disk-verify: /mnt/data: 4194304 bytes, sha256 " + wrote[1].str());
  expect_line(verify, "IO-APIC 17-edge virtio1");
  // Read-only means the file did not change, not even the superblock's mount count.
  EXPECT_TRUE(read_file(disk) == after_check) << "the read-only image changed";

  std::printf("disk-check boot %.1f s, disk-verify boot %.1f s\n", check.seconds, verify.seconds);
}

}  // namespace
}  // namespace shoal::test

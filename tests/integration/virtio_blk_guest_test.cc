// virtio-blk end to end: the test guest's polling driver (guest/virtio_blk.c) against shoal's
// device on real /dev/kvm and a real image file. What the guest reads is checked against the
// file as the host reads it, and what it writes lands in the file.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "support/guest_results.hpp"
#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

constexpr uint64_t kImageBytes = 32 << 20;

class VirtioBlkGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    SHOAL_REQUIRE_KVM();
    image_ = ::testing::TempDir() + "shoal-blk-" + std::to_string(::getpid()) + ".img";
    ASSERT_TRUE(write_blk_image(image_, kImageBytes));
  }
  void TearDown() override {
    if (!image_.empty()) ::unlink(image_.c_str());
  }
  uint64_t file_checksum(uint64_t mib) const { return expected_blk_read_checksum(image_, mib); }
  ProcessResult run(const std::string& workload, const std::string& disk_option) {
    return run_process({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", "256M",
                        "--cmdline", workload, "--disk", disk_option, "--log-level", "warn"},
                       std::chrono::seconds(120));
  }
  std::string image_;
};

TEST_F(VirtioBlkGuest, ReadsWhatTheFileHolds) {
  auto r = run("blk-read 8", image_);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("checksum=" + hex64(file_checksum(8)) + " errors=0"), std::string::npos)
      << r.out;
  // 64 sequential 128 KiB reads and 2048 random 4 KiB reads, 32 in flight.
  EXPECT_NE(r.out.find("requests=2112 "), std::string::npos) << r.out;
}

TEST_F(VirtioBlkGuest, WritesLandInTheFileAndReadBack) {
  auto w = run("blk-write 8", image_);
  ASSERT_EQ(w.exit_code, 0) << w.out << w.err;
  EXPECT_NE(w.out.find(" bad=0 errors=0"), std::string::npos) << w.out;
  // A new machine reads what the first one wrote, as the host sees it in the file; the file's
  // ninth MiB, which the guest did not write, is as it was.
  const uint64_t after = file_checksum(8);
  auto r = run("blk-read 8", image_);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("checksum=" + hex64(after) + " errors=0"), std::string::npos) << r.out;
  std::vector<uint64_t> word(1);
  const int fd = ::open(image_.c_str(), O_RDONLY);
  ASSERT_EQ(::pread(fd, word.data(), 8, 8 << 20), 8);
  ::close(fd);
  EXPECT_EQ(word[0], ((8ull << 20) / 8 ^ 0x5555) * 0xD6E8FEB86659FD93ull);
}

TEST_F(VirtioBlkGuest, ReadOnlyDiskRefusesWrites) {
  auto r = run("blk-write 1", image_ + ",ro");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("disk is read-only"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("features=0x0000000100000260"), std::string::npos) << r.out;  // RO offered
}

TEST_F(VirtioBlkGuest, BadDisksAreRefusedBeforeTheGuestStarts) {
  auto missing = run("blk-read 1", "/nonexistent/disk.img");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("--disk /nonexistent/disk.img: No such file or directory"),
            std::string::npos)
      << missing.err;
  EXPECT_EQ(missing.out.find("shoal-guest"), std::string::npos) << missing.out;
  // Another process holds the image: two writers would corrupt it.
  const int fd = ::open(image_.c_str(), O_RDONLY);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  auto locked = run("blk-read 1", image_);
  ::close(fd);
  EXPECT_NE(locked.exit_code, 0);
  EXPECT_NE(locked.err.find("in use by another process"), std::string::npos) << locked.err;
  EXPECT_EQ(locked.out.find("shoal-guest"), std::string::npos) << locked.out;
  auto bad_option = run("blk-read 1", image_ + ",rw");
  EXPECT_EQ(bad_option.exit_code, 2) << bad_option.err;
  EXPECT_NE(bad_option.err.find("unknown option 'rw' (expected PATH[,ro])"), std::string::npos)
      << bad_option.err;
}

}  // namespace
}  // namespace shoal::test

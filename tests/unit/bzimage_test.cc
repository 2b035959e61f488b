// The x86 boot protocol code against the header of a real kernel: Debian's cloud bzImage,
// fetched by scripts/setup.
#include "arch/bzimage.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "arch/boot_layout.hpp"
#include "arch/kernel_loader.hpp"
#include "shoal/size.hpp"

namespace shoal {
namespace {

class BzImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bytes = read_file(std::string(SHOAL_LINUX_DIR) + "/bzImage", "kernel", 1ull << 30);
    if (!bytes)
      GTEST_SKIP() << "skipped: run scripts/setup to fetch Debian's kernel ("
                   << bytes.error().message() << ")";
    image = std::move(*bytes);
  }
  std::vector<uint8_t> image;
};

// Copies a field of a packed boot structure: gtest binds its arguments to references, and a
// reference to a misaligned field is undefined behaviour (clang's UBSan stops on it).
template <typename T>
T field(T value) {
  return value;
}

TEST_F(BzImageTest, ParsesTheRealHeader) {
  auto info = parse_bzimage(image);
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_GE(info->protocol, kMinBootProtocol);
  EXPECT_TRUE(field(info->header.xloadflags) & XLF_KERNEL_64);
  EXPECT_GT(field(info->header.init_size), image.size() - info->setup_bytes);
  EXPECT_GE(field(info->header.cmdline_size), 255u);
}

TEST_F(BzImageTest, ZeroPageCarriesTheE820MapAndLoaderFields) {
  auto info = parse_bzimage(image);
  ASSERT_TRUE(info.ok());
  const auto e820 = build_e820(GuestRam::layout(8 * GiB));
  auto zp = build_zero_page(*info, image, e820, 42, 0x7000000, 0x1234);
  ASSERT_TRUE(zp.ok());
  ASSERT_EQ(field(zp->e820_entries), e820.size());
  for (size_t i = 0; i < e820.size(); ++i) {
    EXPECT_EQ(field(zp->e820_table[i].addr), e820[i].addr);
    EXPECT_EQ(field(zp->e820_table[i].size), e820[i].size);
    EXPECT_EQ(field(zp->e820_table[i].type), static_cast<uint32_t>(e820[i].type));
  }
  EXPECT_EQ(field(zp->hdr.type_of_loader), 0xff);
  EXPECT_EQ(field(zp->hdr.cmd_line_ptr), boot::kCmdlineAddr);
  EXPECT_EQ(field(zp->hdr.ramdisk_image), 0x7000000u);
  EXPECT_EQ(field(zp->hdr.ramdisk_size), 0x1234u);
  EXPECT_EQ(field(zp->hdr.version), info->protocol);
  EXPECT_EQ(field(zp->hdr.init_size), field(info->header.init_size));
}

TEST_F(BzImageTest, LoadsKernelCmdlineAndInitrd) {
  auto ram = GuestRam::reserve(256 * MiB, 48);
  ASSERT_TRUE(ram.ok());
  std::vector<uint8_t> initrd(3 * 4096 + 5, 0xab);
  BootInputs in{image, initrd, "console=ttyS0", boot::kAcpiAddr};
  auto plan = load_bzimage(*ram, in);
  ASSERT_TRUE(plan.ok()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kLinux64);
  EXPECT_EQ(plan->entry, boot::kKernelAddr + 0x200);
  auto info = parse_bzimage(image);
  EXPECT_EQ(std::memcmp(ram->host(boot::kKernelAddr, 4096), image.data() + info->setup_bytes, 4096),
            0);
  EXPECT_STREQ(reinterpret_cast<const char*>(ram->host(boot::kCmdlineAddr, 1)), "console=ttyS0");
  boot_params zp;
  std::memcpy(&zp, ram->host(boot::kZeroPageAddr, sizeof zp), sizeof zp);
  EXPECT_EQ(zp.hdr.ramdisk_size, initrd.size());
  EXPECT_EQ(zp.hdr.ramdisk_image % 4096, 0u);
  EXPECT_LE(zp.hdr.ramdisk_image + initrd.size(), 256 * MiB);
  EXPECT_GE(zp.hdr.ramdisk_image, boot::kKernelAddr + info->header.init_size);
  EXPECT_EQ(*ram->host(zp.hdr.ramdisk_image, 1), 0xab);
  EXPECT_EQ(zp.acpi_rsdp_addr, boot::kAcpiAddr);
}

TEST_F(BzImageTest, InitrdThatDoesNotFitIsRefused) {
  auto ram = GuestRam::reserve(64 * MiB, 48);
  ASSERT_TRUE(ram.ok());
  std::vector<uint8_t> initrd(32 * MiB, 1);
  auto plan = load_bzimage(*ram, BootInputs{image, initrd, "", 0});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.error().message().find("does not fit"), std::string::npos)
      << plan.error().message();
}

TEST_F(BzImageTest, RejectsOldProtocolAndMissing64BitEntry) {
  auto old = image;
  old[0x206] = 0x0b;  // 2.11
  auto r = parse_bzimage(old);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("2.11 is too old"), std::string::npos) << r.error().message();
  auto no64 = image;
  no64[0x236] &= ~XLF_KERNEL_64;
  r = parse_bzimage(no64);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("64-bit"), std::string::npos);
  EXPECT_FALSE(parse_bzimage(std::span(image).first(0x400)).ok());  // truncated
}

TEST_F(BzImageTest, OverlongCommandLineIsRefused) {
  auto ram = GuestRam::reserve(128 * MiB, 48);
  ASSERT_TRUE(ram.ok());
  auto r = load_bzimage(*ram, BootInputs{image, {}, std::string(70000, 'x'), 0});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("command line"), std::string::npos);
}

}  // namespace
}  // namespace shoal

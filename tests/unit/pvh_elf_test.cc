#include "arch/pvh_elf.hpp"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>

#include "arch/boot_layout.hpp"
#include "arch/kernel_loader.hpp"
#include "shoal/size.hpp"

namespace shoal {
namespace {

std::vector<uint8_t> test_guest() {
  auto bytes = read_file(SHOAL_TEST_GUEST, "test guest", 64 * MiB);
  EXPECT_TRUE(bytes.ok());
  return bytes.ok() ? std::move(*bytes) : std::vector<uint8_t>{};
}

// A minimal ELF64 with one PT_LOAD of `payload` at 2 MiB and, optionally, a PT_NOTE.
std::vector<uint8_t> tiny_elf(bool with_pvh_note, uint64_t load_filesz = 16) {
  std::vector<uint8_t> f(0x200, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_machine = EM_X86_64;
  eh.e_phoff = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = with_pvh_note ? 2 : 1;
  std::memcpy(f.data(), &eh, sizeof eh);
  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  load.p_offset = 0x100;
  load.p_paddr = 0x200000;
  load.p_filesz = load_filesz;
  load.p_memsz = 0x1000;
  std::memcpy(f.data() + sizeof eh, &load, sizeof load);
  if (with_pvh_note) {
    const uint32_t note[] = {4, 4, kXenElfnotePhys32Entry, 0x006e6558 /* "Xen\0" */, 0x200000};
    Elf64_Phdr ph{};
    ph.p_type = PT_NOTE;
    ph.p_offset = 0x180;
    ph.p_filesz = sizeof note;
    std::memcpy(f.data() + sizeof eh + sizeof load, &ph, sizeof ph);
    std::memcpy(f.data() + 0x180, note, sizeof note);
  }
  return f;
}

TEST(PvhElf, TestGuestHasPvhEntryAndShoalNote) {
  auto image = test_guest();
  auto info = parse_pvh_elf(image);
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_EQ(info->entry, 0x100000u);
  EXPECT_TRUE(info->all_vcpus_at_entry);
  EXPECT_EQ(detect_kernel_format(image), KernelFormat::kPvhElf);
}

TEST(PvhElf, LoadWritesStartInfoWithTheE820Map) {
  auto image = test_guest();
  auto ram = GuestRam::reserve(64 * MiB, 48);
  ASSERT_TRUE(ram.ok());
  std::vector<uint8_t> initrd(5000, 0x42);
  auto plan = load_pvh_elf(*ram, BootInputs{image, initrd, "counter 5", boot::kAcpiAddr});
  ASSERT_TRUE(plan.ok()) << plan.error().message();
  EXPECT_EQ(plan->mode, EntryMode::kPvh32);
  HvmStartInfo si;
  std::memcpy(&si, ram->host(boot::kPvhStartInfoAddr, sizeof si), sizeof si);
  EXPECT_EQ(si.magic, kHvmStartMagic);
  EXPECT_EQ(si.version, 1u);
  EXPECT_EQ(si.rsdp_paddr, boot::kAcpiAddr);
  EXPECT_STREQ(reinterpret_cast<const char*>(ram->host(si.cmdline_paddr, 1)), "counter 5");
  ASSERT_EQ(si.memmap_entries, plan->e820.size());
  for (uint32_t i = 0; i < si.memmap_entries; ++i) {
    HvmMemmapEntry e;
    std::memcpy(&e, ram->host(si.memmap_paddr + i * sizeof e, sizeof e), sizeof e);
    EXPECT_EQ(e.addr, plan->e820[i].addr);
    EXPECT_EQ(e.size, plan->e820[i].size);
  }
  ASSERT_EQ(si.nr_modules, 1u);
  HvmModlistEntry mod;
  std::memcpy(&mod, ram->host(si.modlist_paddr, sizeof mod), sizeof mod);
  EXPECT_EQ(mod.size, initrd.size());
  EXPECT_EQ(*ram->host(mod.paddr, 1), 0x42);
  EXPECT_EQ(std::memcmp(ram->host(0x100000, 64), image.data() + 0x1000, 64), 0);
}

TEST(PvhElf, MinimalElfWithNoteLoads) {
  auto f = tiny_elf(true);
  auto info = parse_pvh_elf(f);
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_EQ(info->entry, 0x200000u);
  EXPECT_FALSE(info->all_vcpus_at_entry);
}

TEST(PvhElf, ElfWithoutPvhNoteIsRefusedClearly) {
  auto r = parse_pvh_elf(tiny_elf(false));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("no PVH entry note"), std::string::npos);
}

TEST(PvhElf, SegmentPastEndOfFileIsRefused) {
  auto r = parse_pvh_elf(tiny_elf(true, 0x10000));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("past the end"), std::string::npos);
}

TEST(PvhElf, SegmentOutsideRamIsRefused) {
  auto ram = GuestRam::reserve(4 * MiB, 48);
  ASSERT_TRUE(ram.ok());
  auto image = test_guest();  // its bss reaches past 4 MiB
  auto r = load_pvh_elf(*ram, BootInputs{image, {}, "", 0});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("does not fit"), std::string::npos);
}

TEST(KernelFormat, NeitherBzImageNorElf) {
  std::vector<uint8_t> junk(4096, 0x90);
  EXPECT_EQ(detect_kernel_format(junk), KernelFormat::kUnknown);
  auto ram = GuestRam::reserve(16 * MiB, 48);
  ASSERT_TRUE(ram.ok());
  auto r = load_guest(*ram, BootInputs{junk, {}, "", 0}, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("neither a bzImage nor"), std::string::npos);
}

TEST(PvhElf, RealVmlinuxHasAPvhEntry) {
  auto bytes = read_file(std::string(SHOAL_LINUX_DIR) + "/vmlinux", "vmlinux", 1ull << 30);
  if (!bytes) GTEST_SKIP() << "skipped: run scripts/setup to fetch Debian's kernel";
  auto info = parse_pvh_elf(*bytes);
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_GE(info->entry, 0x1000000u);
  EXPECT_FALSE(info->all_vcpus_at_entry);
}

}  // namespace
}  // namespace shoal

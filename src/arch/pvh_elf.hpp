// ELF kernels booted through PVH: the XEN_ELFNOTE_PHYS32_ENTRY note gives a 32-bit entry that
// takes an hvm_start_info in EBX (Xen's arch-x86/hvm/start_info.h, version 1 with a memmap).
#pragma once

#include <cstdint>
#include <span>

#include "arch/boot_plan.hpp"

namespace shoal {

inline constexpr uint32_t kHvmStartMagic = 0x336ec578;
inline constexpr uint32_t kXenElfnotePhys32Entry = 18;
// shoal's own note ("SHOAL", type 1): every vCPU enters at the PVH entry.
inline constexpr uint32_t kShoalNoteAllVcpusAtEntry = 1;

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};

struct PvhElfInfo {
  uint32_t entry;
  bool all_vcpus_at_entry;
  uint64_t image_end;  // highest loaded physical address (exclusive)
};

bool looks_like_elf(std::span<const uint8_t> image);
// Checks the ELF (32 or 64-bit, x86) and finds the PVH entry; loads nothing.
Result<PvhElfInfo> parse_pvh_elf(std::span<const uint8_t> image);
Result<BootPlan> load_pvh_elf(GuestRam& ram, const BootInputs& in);

}  // namespace shoal

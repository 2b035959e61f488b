// Where boot-time structures live in guest physical memory (all below 1 MiB, as on a PC).
#pragma once

#include <cstdint>

namespace shoal::boot {

inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kIdtAddr = 0x520;
inline constexpr uint64_t kPvhStartInfoAddr = 0x6000;  // hvm_start_info, memmap, modlist
inline constexpr uint64_t kZeroPageAddr = 0x7000;      // Linux boot_params
inline constexpr uint64_t kPml4Addr = 0x9000;          // then PDPT, then 4 page directories
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;
inline constexpr uint64_t kEbdaAddr = 0x9fc00;         // MP table; Linux scans the EBDA
inline constexpr uint64_t kAcpiAddr = 0xe0000;         // RSDP, then XSDT, FADT, DSDT, MADT
inline constexpr uint64_t kResetVectorAddr = 0xffff0;  // F000:FFF0, where a BIOS starts
inline constexpr uint64_t kKernelAddr = 0x100000;
inline constexpr uint64_t kIoapicAddr = 0xfec00000;
inline constexpr uint64_t kLapicAddr = 0xfee00000;

// Guest-visible selectors of the boot GDT (Linux's __BOOT_CS / __BOOT_DS are 0x10 / 0x18).
inline constexpr uint16_t kCode32Selector = 0x08;
inline constexpr uint16_t kCode64Selector = 0x10;
inline constexpr uint16_t kDataSelector = 0x18;
inline constexpr uint16_t kTssSelector = 0x20;

}  // namespace shoal::boot

// What a kernel loader leaves behind: how the vCPUs must enter the guest.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/e820.hpp"
#include "arch/guest_ram.hpp"
#include "shoal/status.hpp"

namespace shoal {

enum class EntryMode {
  kLinux64,  // x86 boot protocol 64-bit entry: long mode, RSI = boot_params
  kPvh32,    // PVH: 32-bit protected mode, paging off, EBX = hvm_start_info
};

struct BootPlan {
  EntryMode mode = EntryMode::kPvh32;
  uint64_t entry = 0;
  uint64_t boot_info = 0;  // boot_params or hvm_start_info address
  // Set by the test guest's SHOAL note: every vCPU starts at the entry (no INIT/SIPI).
  bool all_vcpus_at_entry = false;
  std::vector<E820Entry> e820;
  std::string description;  // "bzImage, boot protocol 2.15" for the log
};

struct BootInputs {
  std::span<const uint8_t> kernel;
  std::span<const uint8_t> initrd;  // empty: none
  std::string cmdline;
  uint64_t acpi_rsdp = 0;    // where the ACPI RSDP will be (0: no ACPI)
  uint32_t virtio_mmio = 0;  // virtio-mmio transports the ACPI tables describe
};

// Highest page-aligned address for `size` bytes of initrd in [lowest, limit); fails with a
// message that says what did not fit.
Result<uint64_t> place_initrd(uint64_t size, uint64_t lowest, uint64_t limit);

}  // namespace shoal

// Reads the kernel/initrd files, recognises the format and leaves a booted-ready guest RAM.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/boot_plan.hpp"
#include "arch/guest_ram.hpp"

namespace shoal {

// Whole file, refusing anything over `limit` bytes; `what` names it in errors.
Result<std::vector<uint8_t>> read_file(const std::string& path, const std::string& what,
                                       uint64_t limit);

enum class KernelFormat { kBzImage, kPvhElf, kUnknown };
KernelFormat detect_kernel_format(std::span<const uint8_t> image);

// Loads the kernel (bzImage or PVH ELF), initrd and command line, then the MP table and
// ACPI tables for `vcpus`, and the boot GDT/page tables.
Result<BootPlan> load_guest(GuestRam& ram, const BootInputs& in, int vcpus);

// Real-mode code for the BIOS reset vector (boot::kResetVectorAddr): writes the ACPI reset
// register. Linux jumps there to reboot when ACPI is hardware-reduced and there is no EFI.
std::vector<uint8_t> reset_vector_stub();

// load_guest() from files: the kernel (at most 1 GiB) and the initrd (empty path: none; at
// most the size of guest RAM), with `virtio_mmio` transports in the ACPI tables. Errors name
// the file.
Result<BootPlan> load_guest_files(GuestRam& ram, const std::string& kernel,
                                  const std::string& initrd, const std::string& cmdline, int vcpus,
                                  uint32_t virtio_mmio = 0);

}  // namespace shoal

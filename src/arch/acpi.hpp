// Minimal ACPI for a hardware-reduced x86 guest: RSDP -> XSDT -> FADT (-> DSDT) and MADT.
// Kernels built without CONFIG_X86_MPPARSE (Debian's cloud kernel) learn their CPUs and
// IOAPIC only from the MADT.
#pragma once

#include <cstdint>
#include <vector>

#include "shoal/status.hpp"

namespace shoal {

struct AcpiTables {
  uint64_t rsdp_addr;
  std::vector<uint8_t> bytes;  // to be written at rsdp_addr
};

// Tables for `vcpus` CPUs (APIC IDs 0..vcpus-1), one IOAPIC and the first `virtio_mmio`
// virtio-mmio transports (platform_ports.hpp), laid out from `addr`.
Result<AcpiTables> build_acpi_tables(uint64_t addr, int vcpus, uint32_t virtio_mmio = 0);

// The byte that makes `bytes` sum to zero, given it currently holds 0.
uint8_t acpi_checksum(const uint8_t* bytes, size_t len);

}  // namespace shoal

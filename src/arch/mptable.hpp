// Intel MultiProcessor Specification 1.4 tables: how Linux (and the test guest) learn the
// vCPUs, the IOAPIC and the ISA interrupt routing without ACPI.
#pragma once

#include <cstdint>
#include <vector>

#include "shoal/status.hpp"

namespace shoal {

// Highest vCPU count the table can describe: xAPIC IDs are 8 bits and the IOAPIC takes the
// ID after the last vCPU.
inline constexpr int kMpTableMaxVcpus = 254;

// The floating pointer followed by the configuration table, to be placed at `addr`.
Result<std::vector<uint8_t>> build_mptable(uint64_t addr, int vcpus);

}  // namespace shoal

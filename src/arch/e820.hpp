// The guest's physical memory map, as Linux's "BIOS-e820" lines print it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/guest_ram.hpp"

namespace shoal {

enum class E820Type : uint32_t { kRam = 1, kReserved = 2 };

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  E820Type type;
  bool operator==(const E820Entry&) const = default;
};

// RAM below the EBDA, [EBDA, 1 MiB) reserved, then RAM from 1 MiB, around the MMIO hole.
std::vector<E820Entry> build_e820(const std::vector<RamRegion>& regions);

// "[mem 0x0000000000000000-0x000000000009fbff] usable", Linux's own format.
std::string format_e820(const E820Entry& entry);

}  // namespace shoal

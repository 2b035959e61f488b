#include "arch/e820.hpp"

#include <cstdio>

#include "arch/boot_layout.hpp"

namespace shoal {

std::vector<E820Entry> build_e820(const std::vector<RamRegion>& regions) {
  std::vector<E820Entry> map;
  for (const RamRegion& r : regions) {
    if (r.gpa == 0) {
      map.push_back({0, boot::kEbdaAddr, E820Type::kRam});
      // The EBDA (MP table), the VGA hole and the BIOS area (ACPI tables) in one entry: Linux's
      // PVH entry reserves [640 KiB, 1 MiB) itself, so its printed map equals this one.
      map.push_back({boot::kEbdaAddr, boot::kKernelAddr - boot::kEbdaAddr, E820Type::kReserved});
      if (r.size > boot::kKernelAddr)
        map.push_back({boot::kKernelAddr, r.size - boot::kKernelAddr, E820Type::kRam});
    } else {
      map.push_back({r.gpa, r.size, E820Type::kRam});
    }
  }
  return map;
}

std::string format_e820(const E820Entry& e) {
  char line[96];
  std::snprintf(line, sizeof line, "[mem 0x%016llx-0x%016llx] %s",
                static_cast<unsigned long long>(e.addr),
                static_cast<unsigned long long>(e.addr + e.size - 1),
                e.type == E820Type::kRam ? "usable" : "reserved");
  return line;
}

}  // namespace shoal

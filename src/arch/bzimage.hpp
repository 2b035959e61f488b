// Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <span>

#include "arch/boot_plan.hpp"

namespace shoal {

inline constexpr uint16_t kMinBootProtocol = 0x020c;  // 2.12: xloadflags, 64-bit entry

struct BzImageInfo {
  uint16_t protocol;
  size_t setup_bytes;  // real-mode setup code and header: (setup_sects + 1) * 512
  size_t header_end;   // the setup header ends here (0x202 + byte at 0x201)
  setup_header header;
};

bool looks_like_bzimage(std::span<const uint8_t> image);
Result<BzImageInfo> parse_bzimage(std::span<const uint8_t> image);

// The zero page for `info`: the image's setup header plus what the loader fills in.
Result<boot_params> build_zero_page(const BzImageInfo& info, std::span<const uint8_t> image,
                                    const std::vector<E820Entry>& e820, uint32_t cmdline_size,
                                    uint64_t initrd_addr, uint64_t initrd_size);

// Loads the protected-mode kernel at 1 MiB, the command line, the initrd and the zero page.
Result<BootPlan> load_bzimage(GuestRam& ram, const BootInputs& in);

}  // namespace shoal

// Byte sizes as users write them: "512M", "64G", "1T".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shoal/status.hpp"

namespace shoal {

inline constexpr uint64_t KiB = 1024;
inline constexpr uint64_t MiB = 1024 * KiB;
inline constexpr uint64_t GiB = 1024 * MiB;
inline constexpr uint64_t TiB = 1024 * GiB;
// The one page size: guest pages, userfaultfd ranges, the zero pool and the coherence protocol
// all work in 4 KiB pages (no huge pages in guest RAM, see memory.md).
inline constexpr uint64_t kPageSize = 4 * KiB;

// A number with an optional K/M/G/T suffix (binary units; "KiB"/"KB"/"k" also accepted).
// A bare number means `bare_unit` bytes (MiB for --memory, as in QEMU's -m).
Result<uint64_t> parse_size(std::string_view text, uint64_t bare_unit);

// "1 GiB", "512 MiB", "4097 B": the largest unit that divides the value exactly.
std::string format_size(uint64_t bytes);

// "0x1f000": addresses and offsets in messages.
std::string format_hex(uint64_t value);

}  // namespace shoal

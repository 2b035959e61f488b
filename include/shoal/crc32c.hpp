// CRC-32C (Castagnoli), the checksum of every block and section in shoal's files. Uses the
// SSE4.2 instruction where the CPU has it (~10 GB/s), a table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shoal {

// `seed` chains calls: crc32c(b, crc32c(a)) == crc32c(a followed by b).
uint32_t crc32c(const void* data, size_t bytes, uint32_t seed = 0);

}  // namespace shoal

// What the bundled test guest's workloads must print, computed the same way on the host.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace shoal::test {

// `compute N`: N xorshift64 steps from a fixed seed, then one multiply.
inline uint64_t expected_compute(uint64_t n) {
  uint64_t x = 0x2545F4914F6CDD1Dull;
  for (uint64_t i = 0; i < n; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
  }
  return x * 0x2545F4914F6CDD1Dull;
}

// `touch MIB` and `touch-random MIB`: the sum of the pattern (page + 1) * K over all pages.
inline uint64_t expected_touch_checksum(uint64_t mib) {
  uint64_t sum = 0;
  for (uint64_t p = 0; p < (mib << 8); ++p) sum += (p + 1) * 0x9E3779B97F4A7C15ull;
  return sum;
}

inline std::string hex64(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%016llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace shoal::test

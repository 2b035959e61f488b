// What the bundled test guest's workloads must print, computed the same way on the host.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

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

// `blk-read MIB`'s checksum of a disk image's first MIB MiB: the sum of word * (index + 1);
// 0 when the file cannot be read that far.
inline uint64_t expected_blk_read_checksum(const std::string& image, uint64_t mib) {
  std::vector<uint64_t> words((mib << 20) / 8);
  const int fd = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
  const bool whole = fd >= 0 && ::pread(fd, words.data(), words.size() * 8, 0) ==
                                    static_cast<ssize_t>(words.size() * 8);
  if (fd >= 0) ::close(fd);
  if (!whole) return 0;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < words.size(); ++i) sum += words[i] * (i + 1);
  return sum;
}

// A disk image of `bytes` whose 8-byte words are all different, so a sector read from the
// wrong place changes blk-read's checksum.
inline bool write_blk_image(const std::string& path, uint64_t bytes) {
  std::vector<uint64_t> words(bytes / 8);
  for (uint64_t i = 0; i < words.size(); ++i) words[i] = (i ^ 0x5555) * 0xD6E8FEB86659FD93ull;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = ::write(fd, words.data(), bytes) == static_cast<ssize_t>(bytes);
  ::close(fd);
  return ok;
}

inline std::string hex64(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%016llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace shoal::test

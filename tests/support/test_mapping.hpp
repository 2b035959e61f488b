// Guest-RAM-like memory for tests without a VM: anonymous, MAP_NORESERVE, 4 KiB pages only
// (a transparent huge page would be half-served by the kernel under userfaultfd).
#pragma once

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>

namespace shoal::test {

inline uint8_t* map_test_ram(uint64_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  EXPECT_NE(p, MAP_FAILED);
  if (p == MAP_FAILED) return nullptr;
  madvise(p, bytes, MADV_NOHUGEPAGE);
  return static_cast<uint8_t*>(p);
}

}  // namespace shoal::test

// A fixed-size array of per-page records in one anonymous MAP_NORESERVE mapping: the kernel
// backs a 4 KiB piece of it only once something is written there, so a directory for a 1 TiB
// guest costs memory only where the guest was touched. Every element starts as all-zero
// bytes, so T's zero bit pattern must mean "nothing known" (dormant, no holder). Owns the
// mapping; move-only.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "shoal/status.hpp"

namespace shoal {

template <class T>
class SparseArray {
  static_assert(std::is_trivially_destructible_v<T> && std::is_standard_layout_v<T>,
                "elements live in raw zero-filled memory");

 public:
  SparseArray() = default;
  static Result<SparseArray> create(uint64_t count, const char* what) {
    if (count == 0) return SparseArray();
    void* p = mmap(nullptr, count * sizeof(T), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return errno_error(what);
    SparseArray a;
    a.data_ = static_cast<T*>(p);
    a.count_ = count;
    return a;
  }
  SparseArray(SparseArray&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  SparseArray& operator=(SparseArray&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  SparseArray(const SparseArray&) = delete;
  SparseArray& operator=(const SparseArray&) = delete;
  ~SparseArray() { release(); }

  uint64_t size() const { return count_; }
  T& operator[](uint64_t i) { return data_[i]; }
  const T& operator[](uint64_t i) const { return data_[i]; }

 private:
  void release() {
    if (data_ != nullptr) munmap(data_, count_ * sizeof(T));
    data_ = nullptr;
    count_ = 0;
  }

  T* data_ = nullptr;
  uint64_t count_ = 0;
};

}  // namespace shoal

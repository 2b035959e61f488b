// A fixed-size array of per-page records in one anonymous MAP_NORESERVE mapping: the kernel
// backs a 4 KiB piece of it only once something is written there, so a directory for a 1 TiB
// guest costs memory only where the guest was touched. Every element starts as all-zero
// bytes, so T's zero bit pattern must mean "nothing known" (dormant, no holder). Owns the
// mapping; move-only.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

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

  // Calls `f(first, end)` for the elements of each 4 KiB piece the kernel has backed
  // (mincore), in order, so a sparse array's few touched pieces are found without reading
  // the rest. mincore() also calls a swapped-out piece unbacked: a caller that must see every
  // non-zero element counts them and, finding fewer than it should, walks again with
  // `skip_unbacked` false (one call over the whole array).
  void for_each_backed(const std::function<void(uint64_t first, uint64_t end)>& f,
                       bool skip_unbacked = true) const {
    static_assert(4096 % sizeof(T) == 0, "elements do not straddle pieces");
    constexpr uint64_t kPiece = 4096, kPerPiece = kPiece / sizeof(T), kPiecesPerCall = 4096;
    const uint64_t total = count_ * sizeof(T);
    if (!skip_unbacked) {
      if (count_ != 0) f(0, count_);
      return;
    }
    std::vector<unsigned char> backed(kPiecesPerCall);
    for (uint64_t at = 0; at < total; at += kPiece * kPiecesPerCall) {
      const uint64_t span = std::min(kPiece * kPiecesPerCall, total - at);
      // A mapping the kernel cannot describe is walked whole: slower, never wrong.
      if (mincore(reinterpret_cast<uint8_t*>(data_) + at, span, backed.data()) < 0)
        std::fill(backed.begin(), backed.end(), 1);
      for (uint64_t c = 0; c * kPiece < span; ++c)
        if ((backed[c] & 1) != 0) {
          const uint64_t first = (at / kPiece + c) * kPerPiece;
          f(first, std::min(first + kPerPiece, count_));
        }
    }
  }

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

// The one source of truth for the state of every guest page on this host. One byte per 4 KiB
// page in a MAP_NORESERVE array, so a 1 TiB guest costs directory memory only where it is
// touched (4 KiB of directory per 16 MiB of guest). Later issues add remote/shared states.
#pragma once

#include <atomic>
#include <cstdint>

#include "shoal/status.hpp"

namespace shoal {

enum class PageState : uint8_t {
  kDormant = 0,  // no host page: the next touch faults and is served from the zero pool
  kPresent = 1,  // mapped in this host's guest RAM
};

class PageDirectory {
 public:
  static Result<PageDirectory> create(uint64_t pages);
  PageDirectory(PageDirectory&& o) noexcept;
  PageDirectory& operator=(PageDirectory&& o) noexcept;
  PageDirectory(const PageDirectory&) = delete;
  PageDirectory& operator=(const PageDirectory&) = delete;
  ~PageDirectory();

  uint64_t pages() const { return pages_; }
  PageState state(uint64_t page) const {
    return static_cast<PageState>(states_[page].load(std::memory_order_acquire));
  }
  // Sets [first, first+count) to `s`, keeping present_pages() in step.
  void set_range(uint64_t first, uint64_t count, PageState s);
  // Length of the run of dormant pages starting at `first`, at most `limit`.
  uint64_t dormant_run(uint64_t first, uint64_t limit) const;
  uint64_t present_pages() const { return present_.load(std::memory_order_relaxed); }
  const std::atomic<uint64_t>& present_counter() const { return present_; }

 private:
  PageDirectory() = default;
  void release();

  std::atomic<uint8_t>* states_ = nullptr;
  uint64_t pages_ = 0;
  std::atomic<uint64_t> present_{0};
};

}  // namespace shoal

// The one source of truth for the state of every guest page on this host: one byte per 4 KiB
// page in a sparse array, so a 1 TiB guest costs directory memory only where it is touched
// (4 KiB of directory per 16 MiB of guest). A single host uses dormant and present; a pod
// member also has shared copies (read-only; present is then "exclusive": this host is the
// page's only holder). What is in flight for a page (a request to its home) lives in the
// pod's side tables, not here.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "memory/sparse_array.hpp"
#include "shoal/status.hpp"

namespace shoal {

enum class PageState : uint8_t {
  kDormant = 0,  // no host page: the next touch faults and is served from a page source
  kPresent = 1,  // mapped writable in this host's guest RAM (in a pod: held exclusively)
  kShared = 2,   // a read-only copy, mapped write-protected (pods only)
};

class PageDirectory {
 public:
  static Result<PageDirectory> create(uint64_t pages);
  PageDirectory(PageDirectory&& o) noexcept;
  PageDirectory& operator=(PageDirectory&& o) noexcept;
  PageDirectory(const PageDirectory&) = delete;
  PageDirectory& operator=(const PageDirectory&) = delete;
  ~PageDirectory() = default;

  uint64_t pages() const { return states_.size(); }
  PageState state(uint64_t page) const {
    return static_cast<PageState>(states_[page].load(std::memory_order_acquire));
  }
  // Sets [first, first+count) to `s`, keeping present_pages() in step.
  void set_range(uint64_t first, uint64_t count, PageState s);
  // Length of the run of dormant pages starting at `first`, at most `limit`.
  uint64_t dormant_run(uint64_t first, uint64_t limit) const;
  // Calls `f(first, count)` for each run of mapped (present or shared) pages, in page order.
  // Skips the parts of the directory the kernel never backed (mincore) without reading them,
  // so a sparse 1 TiB guest is walked in milliseconds. mincore() also calls a swapped-out part
  // unbacked: a caller that finds fewer pages than present_pages() walks again with
  // `skip_unbacked` false.
  void for_each_mapped_run(const std::function<void(uint64_t first, uint64_t count)>& f,
                           bool skip_unbacked = true) const;
  // Every mapped page, in order, complete: the mincore walk first, and the whole directory
  // again if that found fewer than present_pages() (a swapped-out part of the directory).
  std::vector<uint64_t> mapped_pages() const;
  // Pages this host has mapped (present or shared): what they cost in host memory.
  uint64_t present_pages() const { return present_.load(std::memory_order_relaxed); }
  const std::atomic<uint64_t>& present_counter() const { return present_; }

 private:
  PageDirectory() = default;

  SparseArray<std::atomic<uint8_t>> states_;
  std::atomic<uint64_t> present_{0};
};

}  // namespace shoal

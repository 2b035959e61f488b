// Which guest pages the guest touches during a window of time: what a snapshot stores first
// (its working set, loaded first on restore). When the window opens, every mapped page is
// write-protected (UFFDIO_WRITEPROTECT; KVM's mappings follow through the MMU notifier), and
// from then on the fault thread reports to record():
//   - a write to a mapped page: a write-protect fault, resolved by lifting the protection of
//     the page's whole granule (kTrackGranulePages, a snapshot block's worth), whose mapped
//     pages are all recorded (on_write_fault);
//   - a first touch of a dormant page, or of a page a restore has not installed yet: the
//     MISSING fault the page's source serves.
// Reads of pages mapped before the window opened make no fault and are not seen: without a
// kernel patch (or idle page tracking, which this kernel lacks) nothing reports them. Closing
// the window lifts the protection from every page.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "memory/dormant_server.hpp"
#include "memory/page_directory.hpp"
#include "memory/sparse_array.hpp"
#include "memory/userfaultfd.hpp"
#include "shoal/status.hpp"

namespace shoal {

// Pages recorded and unprotected together on a write fault: 256 KiB, one snapshot block.
inline constexpr uint64_t kTrackGranulePages = 64;

class WorkingSetTracker {
 public:
  using Target = DormantServer::Target;

  // `uffd` must have guest RAM registered for MISSING and WP faults.
  static Result<std::unique_ptr<WorkingSetTracker>> create(const Userfaultfd& uffd, Target ram,
                                                           const PageDirectory& directory);

  // Starts recording: clears what an earlier window saw, write-protects every mapped page.
  Status open_window();
  // Stops recording and lifts every protection; the pages seen, in page order.
  Result<std::vector<uint64_t>> close_window();
  // With the guest paused: the pages seen so far (in page order), and a new window from here.
  // Only they need protecting again: every other mapped page still is (a replica's interval).
  Result<std::vector<uint64_t>> rotate_window();
  bool open() const { return open_.load(std::memory_order_acquire); }

  // `page` was touched (a MISSING fault served while the window is open, on the fault thread)
  // or discarded (on the thread that discards).
  void record(uint64_t page);
  void record_range(uint64_t first, uint64_t count);  // one lock for a batch
  // On the fault thread: a write-protect fault on `page`; records it and lets the write go on.
  Status on_write_fault(uint64_t page);
  // Held by the fault thread around serving one fault and recording it (or on_write_fault),
  // and taken by rotate_window() and close_window(): a page a vCPU may already write (its
  // COPY or MOVE woke it) is always recorded before a window can end, and a write fault's
  // record and unprotect never straddle a rotation.
  std::unique_lock<std::mutex> hold_serving() { return std::unique_lock(serve_mu_); }
  uint64_t write_faults() const { return write_faults_.load(std::memory_order_relaxed); }

 private:
  WorkingSetTracker(const Userfaultfd& uffd, Target ram, const PageDirectory& directory,
                    SparseArray<std::atomic<uint8_t>> seen)
      : uffd_(uffd), ram_(ram), dir_(directory), seen_(std::move(seen)) {}
  Status protect_mapped(bool protect);

  const Userfaultfd& uffd_;
  Target ram_;
  const PageDirectory& dir_;
  SparseArray<std::atomic<uint8_t>> seen_;  // one byte a page; 1: touched in this window
  std::mutex serve_mu_;                     // see hold_serving(); taken before mu_
  std::mutex mu_;                           // seen_pages_, and seen_ with it
  std::vector<uint64_t> seen_pages_;        // the same, as a list
  std::atomic<bool> open_{false};
  std::atomic<uint64_t> write_faults_{0};
};

}  // namespace shoal

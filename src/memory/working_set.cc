#include "memory/working_set.hpp"

#include <algorithm>
#include <mutex>

namespace shoal {

namespace {

constexpr uint64_t kPage = 4096;

}  // namespace

Result<std::unique_ptr<WorkingSetTracker>> WorkingSetTracker::create(
    const Userfaultfd& uffd, Target ram, const PageDirectory& directory) {
  auto seen = SparseArray<std::atomic<uint8_t>>::create(ram.bytes / kPage, "working set");
  if (!seen) return seen.error();
  return std::unique_ptr<WorkingSetTracker>(
      new WorkingSetTracker(uffd, ram, directory, std::move(*seen)));
}

Status WorkingSetTracker::protect_mapped(bool protect) {
  Status s;
  dir_.for_each_mapped_run(
      [&](uint64_t first, uint64_t count) {
        if (!s.ok()) return;
        const int rc = uffd_.write_protect(reinterpret_cast<uint64_t>(ram_.base) + first * kPage,
                                           count * kPage, protect);
        // ENOENT: part of the run went away meanwhile (a discard); the rest is protected.
        if (rc != 0 && rc != -ENOENT) s = errno_error("UFFDIO_WRITEPROTECT", -rc);
      },
      /*skip_unbacked=*/false);
  return s;
}

Status WorkingSetTracker::open_window() {
  std::lock_guard serving(serve_mu_);
  if (open()) return Error("working set: a window is open already");
  {
    std::lock_guard lock(mu_);
    for (uint64_t p : seen_pages_) seen_[p].store(0, std::memory_order_relaxed);
    seen_pages_.clear();
  }
  write_faults_ = 0;
  // Open before protecting: a write racing the protection is a fault that must be recorded.
  open_.store(true, std::memory_order_release);
  if (Status s = protect_mapped(true); !s.ok()) {
    open_.store(false, std::memory_order_release);
    (void)protect_mapped(false);
    return s.error().context("working set");
  }
  return {};
}

Result<std::vector<uint64_t>> WorkingSetTracker::close_window() {
  std::lock_guard serving(serve_mu_);
  if (!open()) return Error("working set: no window is open");
  open_.store(false, std::memory_order_release);
  SHOAL_TRY(protect_mapped(false), "working set");
  std::vector<uint64_t> pages;
  {
    std::lock_guard lock(mu_);
    pages = seen_pages_;
  }
  std::sort(pages.begin(), pages.end());
  return pages;
}

Result<std::vector<uint64_t>> WorkingSetTracker::rotate_window() {
  std::lock_guard serving(serve_mu_);
  if (!open()) return Error("working set: no window is open");
  std::vector<uint64_t> pages;
  {
    std::lock_guard lock(mu_);
    pages.swap(seen_pages_);
    for (uint64_t p : pages) seen_[p].store(0, std::memory_order_relaxed);
  }
  std::sort(pages.begin(), pages.end());
  // One ioctl per run of consecutive mapped pages (a page discarded since is dormant: its next
  // touch faults anyway).
  auto protect = [&](uint64_t first, uint64_t count) -> Status {
    if (count == 0) return {};
    const int rc = uffd_.write_protect(reinterpret_cast<uint64_t>(ram_.base) + first * kPage,
                                       count * kPage, true);
    return rc == 0 || rc == -ENOENT ? Status{} : errno_error("UFFDIO_WRITEPROTECT", -rc);
  };
  uint64_t run_first = 0, run_count = 0;
  for (uint64_t p : pages) {
    const bool mapped = dir_.state(p) != PageState::kDormant;
    if (mapped && run_count > 0 && p == run_first + run_count) {
      ++run_count;
      continue;
    }
    SHOAL_TRY(protect(run_first, run_count), "working set");
    run_first = p;
    run_count = mapped ? 1 : 0;
  }
  SHOAL_TRY(protect(run_first, run_count), "working set");
  return pages;
}

void WorkingSetTracker::record(uint64_t page) {
  record_range(page, 1);
}

void WorkingSetTracker::record_range(uint64_t first, uint64_t count) {
  if (!open() || first >= seen_.size()) return;
  const uint64_t end = std::min<uint64_t>(first + count, seen_.size());
  std::lock_guard lock(mu_);  // against the API thread's open and close, never contended else
  for (uint64_t p = first; p < end; ++p)
    if (seen_[p].exchange(1, std::memory_order_relaxed) == 0) seen_pages_.push_back(p);
}

Status WorkingSetTracker::on_write_fault(uint64_t page) {
  ++write_faults_;
  // The whole granule around the page, recorded and unprotected in one go: a write-protect
  // fault costs ~200 us here (the vCPU's sleep and wake, the protection change through KVM's
  // MMU notifier), copying a page that did not change ~1 us. Page by page, a guest writing
  // fresh memory in a scattered order ran 40x slower under a replica.
  const uint64_t first = page / kTrackGranulePages * kTrackGranulePages;
  const uint64_t end = std::min<uint64_t>(first + kTrackGranulePages, ram_.bytes / kPage);
  for (uint64_t p = first; p < end; ++p)
    if (p == page || dir_.state(p) != PageState::kDormant) record(p);
  // Lifting the protection wakes the writer; a page no longer mapped (discarded since) makes
  // it fault again as MISSING, which its source serves.
  const int rc = uffd_.write_protect(reinterpret_cast<uint64_t>(ram_.base) + first * kPage,
                                     (end - first) * kPage, false);
  return rc == 0 || rc == -ENOENT ? Status{} : errno_error("UFFDIO_WRITEPROTECT", -rc);
}

}  // namespace shoal

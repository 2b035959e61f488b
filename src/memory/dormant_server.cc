#include "memory/dormant_server.hpp"

#include <poll.h>
#include <sys/mman.h>

#include <bit>
#include <string>

#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr uint64_t kPage = kPageSize;
// Windows served ahead of a sequential stream (2 MiB each once the stream is established).
constexpr int kPrefetchWindows = 2;
// Consecutive faults on one "present" page before asking the kernel whether it really is.
constexpr uint64_t kRepeatFaultsBeforeCheck = 64;

}  // namespace

DormantServer::DormantServer(const Userfaultfd& uffd, Target ram, PageDirectory& directory,
                             ZeroPool* pool, FaultServing serving, uint64_t budget_bytes,
                             DormantGate gate)
    : uffd_(uffd),
      ram_(ram),
      pages_(ram.bytes / kPage),
      dir_(directory),
      pool_(pool),
      serving_(serving),
      budget_bytes_(budget_bytes),
      move_ok_(uffd.has_move() && pool != nullptr && serving != FaultServing::kSingleCopy),
      gate_(std::move(gate)) {}

Result<std::unique_ptr<DormantServer>> DormantServer::create(const Userfaultfd& uffd, Target ram,
                                                             PageDirectory& directory,
                                                             ZeroPool* pool, FaultServing serving,
                                                             uint64_t budget_bytes,
                                                             DormantGate gate) {
  std::unique_ptr<DormantServer> s(
      new DormantServer(uffd, ram, directory, pool, serving, budget_bytes, std::move(gate)));
  // Never written: every page of it is the shared zero page, so COPY reads zeros for free.
  void* z = mmap(nullptr, kPoolChunkBytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (z == MAP_FAILED) return errno_error("dormant pages: zero source");
  s->zeros_ = static_cast<uint8_t*>(z);
  return s;
}

DormantServer::~DormantServer() {
  if (zeros_ != nullptr) munmap(zeros_, kPoolChunkBytes);
}

bool DormantServer::servable(uint64_t page) const {
  return dir_.state(page) == PageState::kDormant && (!gate_.may_serve || gate_.may_serve(page));
}

void DormantServer::mark_present(uint64_t first, uint64_t count) {
  dir_.set_range(first, count, PageState::kPresent);
  if (gate_.served) gate_.served(first, count);
}

Status DormantServer::serve_fault(uint64_t page, Access /*access*/) {
  ++stats_.faults;
  if (dir_.state(page) == PageState::kPresent) {
    // Another vCPU's fault on the same page, or one that raced our last batch: the page is
    // there, so only the waiter needs waking. A page that keeps faulting while "present" is
    // not there at all (the directory missed a zap): check with the kernel, then serve it.
    ++stats_.duplicate_faults;
    repeat_faults_ = page == last_duplicate_ ? repeat_faults_ + 1 : 0;
    last_duplicate_ = page;
    if (repeat_faults_ < kRepeatFaultsBeforeCheck || page_resident(page)) {
      const int rc = uffd_.wake(addr(page), kPage);
      return rc == 0 ? Status{} : errno_error("UFFDIO_WAKE", -rc);
    }
    ++stats_.directory_repairs;
    dir_.set_range(page, 1, PageState::kDormant);
  }
  PageWindow w{page, 1};
  if (serving_ == FaultServing::kBatch) w = policy_.window_for(page);
  // The dormant run around the faulting page, inside the window.
  uint64_t lo = page, hi = page + 1;
  while (lo > w.first && servable(lo - 1)) --lo;
  while (hi < w.first + w.count && hi < pages_ && servable(hi)) ++hi;
  const uint64_t count = hi - lo;
  stats_.batch_log2[std::min<size_t>(std::bit_width(count) - 1, 9)]++;
  // Until the pool starts filling (when the vCPUs start, so that start-up does not share the
  // CPUs with it) the loader's first touches are served by copying zeros.
  const bool move = move_ok_ && pool_->started();
  SHOAL_TRY(move ? move_pages(lo, count) : copy_pages(lo, count), "");
  if (w.sequential && move) return prefetch_after(w);
  return {};
}

bool DormantServer::page_resident(uint64_t page) const {
  unsigned char v = 0;
  return mincore(ram_.base + page * kPage, kPage, &v) == 0 && (v & 1);
}

bool DormantServer::fault_pending() const {
  pollfd p{uffd_.fd(), POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

Status DormantServer::prefetch_after(const PageWindow& w) {
  uint64_t next = w.first + w.count;
  for (int k = 0; k < kPrefetchWindows && next < pages_; ++k) {
    if (fault_pending()) break;  // a vCPU waits: serve it first
    const uint64_t end = std::min(next + w.count, pages_);
    uint64_t lo = next;
    while (lo < end && !servable(lo)) ++lo;
    uint64_t hi = lo;
    while (hi < end && servable(hi)) ++hi;
    if (hi > lo) {
      const uint64_t before = stats_.pages_served;
      SHOAL_TRY(move_pages(lo, hi - lo, /*wait=*/false), "prefetch");
      const uint64_t moved = stats_.pages_served - before;
      stats_.pages_prefetched += moved;
      if (moved < hi - lo) break;  // the pool had no more ready
    }
    next = end;
  }
  policy_.prefetched(next);
  return {};
}

Status DormantServer::move_pages(uint64_t first, uint64_t count, bool wait) {
  uint64_t page = first;
  const uint64_t end = first + count;
  while (page < end) {
    Result<ZeroPool::Run> run = pool_->try_take(end - page);
    if (run->pages == 0) {
      if (!wait) return {};  // a prefetch: nothing ready, nothing to do
      // The pool is empty (it has just started, or a burst outran its refill): copying zeros
      // costs about a microsecond a page, waiting for a 2 MiB refill milliseconds. Unless the
      // budget is what keeps the pool empty: then the pool's wait names it.
      const uint64_t want = end - page;
      if (budget_allows(want)) {
        stats_.pages_copied_pool_empty += want;
        return copy_pages(page, want);
      }
      run = pool_->take(want);
      if (!run) return run.error();
    }
    uint64_t done_pages = 0;
    while (done_pages < run->pages) {
      int64_t done = 0;
      const uint64_t dst = addr(page + done_pages);
      const uint64_t src = reinterpret_cast<uint64_t>(run->addr) + done_pages * kPage;
      const int rc = uffd_.move(dst, src, (run->pages - done_pages) * kPage, &done);
      ++stats_.moves;
      const uint64_t moved = static_cast<uint64_t>(done) / kPage;
      if (moved > 0) {
        mark_present(page + done_pages, moved);
        pool_->consumed(*run, moved);
        stats_.pages_served += moved;
        done_pages += moved;
      }
      if (rc == 0) continue;
      if (rc == -EAGAIN) {
        ++stats_.eagain;  // the kernel stopped part-way (a racing fault, a hole): go on
        continue;
      }
      if (rc == -EEXIST) {
        // The destination page got mapped behind our back: it is present now; skip it and
        // wake whoever waits on it. Its pool page stays in the pool, still zero.
        ++stats_.eexist;
        mark_present(page + done_pages, 1);
        (void)uffd_.wake(dst + moved * kPage, kPage);
        ++done_pages;
        continue;
      }
      if (rc == -ENOENT || rc == -EBUSY || rc == -EINVAL) {
        // MOVE refused this source (not populated, shared, or unsupported here): COPY zeros.
        ++stats_.move_fallbacks;
        if (rc == -EINVAL) move_ok_ = false;
        SHOAL_TRY(copy_pages(page + done_pages, run->pages - done_pages), "UFFDIO_MOVE fallback");
        done_pages = run->pages;
        continue;
      }
      return errno_error("UFFDIO_MOVE", -rc);
    }
    page += run->pages;
  }
  return {};
}

// Whether `pages` more guest pages fit the budget with what the guest and the pool hold now.
bool DormantServer::budget_allows(uint64_t pages) const {
  const uint64_t pool_pages = pool_ ? pool_->populated_pages() : 0;
  return budget_bytes_ == 0 || (dir_.present_pages() + pool_pages + pages) * kPage <= budget_bytes_;
}

Status DormantServer::copy_pages(uint64_t first, uint64_t count) {
  uint64_t page = first;
  const uint64_t end = first + count;
  while (page < end) {
    const uint64_t chunk = std::min(end - page, kPoolChunkPages);
    const uint64_t pool_pages = pool_ ? pool_->populated_pages() : 0;
    if (!budget_allows(chunk))
      return Error("memory budget of " + format_size(budget_bytes_) +
                   " exhausted: " + std::to_string(dir_.present_pages()) +
                   " guest pages present + " + std::to_string(pool_pages) + " in the zero pool, " +
                   std::to_string(chunk) + " more needed (raise --memory-budget)");
    int64_t done = 0;
    const int rc = uffd_.copy(addr(page), reinterpret_cast<uint64_t>(zeros_), chunk * kPage, &done);
    ++stats_.copies;
    const uint64_t copied = static_cast<uint64_t>(done) / kPage;
    if (copied > 0) {
      mark_present(page, copied);
      stats_.pages_served += copied;
      page += copied;
    }
    if (rc == 0 || rc == -EAGAIN) {
      if (rc == -EAGAIN) ++stats_.eagain;
      continue;
    }
    if (rc == -EEXIST) {
      ++stats_.eexist;
      mark_present(page, 1);
      (void)uffd_.wake(addr(page), kPage);
      ++page;
      continue;
    }
    return errno_error("UFFDIO_COPY", -rc);
  }
  return {};
}

}  // namespace shoal

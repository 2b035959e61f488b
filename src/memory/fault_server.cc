#include "memory/fault_server.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <string>

#include "shoal/clock.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr uint64_t kPage = kPageSize;
constexpr size_t kMaxEvents = 64;
// Windows served ahead of a sequential stream (2 MiB each once the stream is established).
constexpr int kPrefetchWindows = 2;
// Consecutive faults on one "present" page before asking the kernel whether it really is.
constexpr uint64_t kRepeatFaultsBeforeCheck = 64;

}  // namespace

FaultServer::FaultServer(const Userfaultfd& uffd, Target ram, PageDirectory& directory,
                         ZeroPool* pool, FaultServing serving,
                         std::function<void(const Error&)> on_fatal, uint64_t budget_bytes)
    : uffd_(uffd),
      ram_(ram),
      pages_(ram.bytes / kPage),
      dir_(directory),
      pool_(pool),
      serving_(serving),
      budget_bytes_(budget_bytes),
      move_ok_(uffd.has_move() && pool != nullptr && serving != FaultServing::kSingleCopy),
      on_fatal_(std::move(on_fatal)),
      stop_fd_(eventfd(0, EFD_CLOEXEC)) {}

FaultServer::~FaultServer() {
  stop();
  if (zeros_ != nullptr) munmap(zeros_, kPoolChunkBytes);
}

Status FaultServer::start() {
  if (!stop_fd_.valid()) return errno_error("fault server: eventfd");
  // Never written: every page of it is the shared zero page, so COPY reads zeros for free.
  void* z = mmap(nullptr, kPoolChunkBytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (z == MAP_FAILED) return errno_error("fault server: zero source");
  zeros_ = static_cast<uint8_t*>(z);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "uffd-server");
    loop();
  });
  return {};
}

void FaultServer::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!write(stop_fd_.get(), &one, sizeof one);
  thread_.join();
}

uint64_t FaultServer::busy_ns() const {
  const uint64_t since = busy_since_ns_.load(std::memory_order_relaxed);
  return since == 0 ? 0 : monotonic_ns() - since;
}

void FaultServer::loop() {
  pollfd fds[2] = {{uffd_.fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
  uffd_msg msgs[kMaxEvents];
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      on_fatal_(errno_error("fault server: poll"));
      return;
    }
    if (fds[1].revents) return;
    const ssize_t n = read(uffd_.fd(), msgs, sizeof msgs);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      on_fatal_(errno_error("fault server: read userfaultfd"));
      return;
    }
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      const uint64_t address = msgs[i].arg.pagefault.address;
      const uint64_t offset = address - reinterpret_cast<uint64_t>(ram_.base);
      if (address < reinterpret_cast<uint64_t>(ram_.base) || offset >= ram_.bytes) {
        on_fatal_(Error("fault server: fault at " + format_hex(address) + " outside guest RAM"));
        return;
      }
      busy_since_ns_.store(monotonic_ns(), std::memory_order_relaxed);
      Status s = serve(offset / kPage);
      busy_since_ns_.store(0, std::memory_order_relaxed);
      if (!s.ok()) {
        on_fatal_(
            s.error().context("serve guest page at offset " + format_hex(offset & ~(kPage - 1))));
        return;
      }
    }
  }
}

Status FaultServer::serve(uint64_t page) {
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
  while (lo > w.first && dir_.state(lo - 1) == PageState::kDormant) --lo;
  while (hi < w.first + w.count && hi < pages_ && dir_.state(hi) == PageState::kDormant) ++hi;
  const uint64_t count = hi - lo;
  stats_.batch_log2[std::min<size_t>(std::bit_width(count) - 1, 9)]++;
  // Until the pool starts filling (when the vCPUs start, so that start-up does not share the
  // CPUs with it) the loader's first touches are served by copying zeros.
  const bool move = move_ok_ && pool_->started();
  SHOAL_TRY(move ? move_pages(lo, count) : copy_pages(lo, count), "");
  if (w.sequential && move) return prefetch_after(w);
  return {};
}

bool FaultServer::page_resident(uint64_t page) const {
  unsigned char v = 0;
  return mincore(ram_.base + page * kPage, kPage, &v) == 0 && (v & 1);
}

bool FaultServer::fault_pending() const {
  pollfd p{uffd_.fd(), POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

Status FaultServer::prefetch_after(const PageWindow& w) {
  uint64_t next = w.first + w.count;
  for (int k = 0; k < kPrefetchWindows && next < pages_; ++k) {
    if (fault_pending()) break;  // a vCPU waits: serve it first
    const uint64_t end = std::min(next + w.count, pages_);
    uint64_t lo = next;
    while (lo < end && dir_.state(lo) == PageState::kPresent) ++lo;
    uint64_t hi = lo;
    while (hi < end && dir_.state(hi) == PageState::kDormant) ++hi;
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

Status FaultServer::move_pages(uint64_t first, uint64_t count, bool wait) {
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
        dir_.set_range(page + done_pages, moved, PageState::kPresent);
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
        dir_.set_range(page + done_pages, 1, PageState::kPresent);
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
bool FaultServer::budget_allows(uint64_t pages) const {
  const uint64_t pool_pages = pool_ ? pool_->populated_pages() : 0;
  return budget_bytes_ == 0 || (dir_.present_pages() + pool_pages + pages) * kPage <= budget_bytes_;
}

Status FaultServer::copy_pages(uint64_t first, uint64_t count) {
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
      dir_.set_range(page, copied, PageState::kPresent);
      stats_.pages_served += copied;
      page += copied;
    }
    if (rc == 0 || rc == -EAGAIN) {
      if (rc == -EAGAIN) ++stats_.eagain;
      continue;
    }
    if (rc == -EEXIST) {
      ++stats_.eexist;
      dir_.set_range(page, 1, PageState::kPresent);
      (void)uffd_.wake(addr(page), kPage);
      ++page;
      continue;
    }
    return errno_error("UFFDIO_COPY", -rc);
  }
  return {};
}

}  // namespace shoal

#include "memory/page_directory.hpp"

#include <sys/mman.h>

#include <utility>

namespace shoal {

static_assert(sizeof(std::atomic<uint8_t>) == 1 && std::atomic<uint8_t>::is_always_lock_free);

Result<PageDirectory> PageDirectory::create(uint64_t pages) {
  void* p = mmap(nullptr, pages, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_error("page directory");
  PageDirectory d;
  // Zero-filled anonymous memory reads as kDormant (0) everywhere.
  d.states_ = static_cast<std::atomic<uint8_t>*>(p);
  d.pages_ = pages;
  return d;
}

PageDirectory::PageDirectory(PageDirectory&& o) noexcept
    : states_(std::exchange(o.states_, nullptr)),
      pages_(std::exchange(o.pages_, 0)),
      present_(o.present_.load()) {}

PageDirectory& PageDirectory::operator=(PageDirectory&& o) noexcept {
  if (this != &o) {
    release();
    states_ = std::exchange(o.states_, nullptr);
    pages_ = std::exchange(o.pages_, 0);
    present_ = o.present_.load();
  }
  return *this;
}

PageDirectory::~PageDirectory() {
  release();
}

void PageDirectory::release() {
  if (states_ != nullptr) munmap(states_, pages_);
  states_ = nullptr;
}

void PageDirectory::set_range(uint64_t first, uint64_t count, PageState s) {
  int64_t delta = 0;
  for (uint64_t p = first; p < first + count; ++p) {
    const auto old = static_cast<PageState>(
        states_[p].exchange(static_cast<uint8_t>(s), std::memory_order_acq_rel));
    if (old != PageState::kPresent && s == PageState::kPresent) ++delta;
    if (old == PageState::kPresent && s != PageState::kPresent) --delta;
  }
  present_.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
}

uint64_t PageDirectory::dormant_run(uint64_t first, uint64_t limit) const {
  uint64_t n = 0;
  while (n < limit && first + n < pages_ && state(first + n) == PageState::kDormant) ++n;
  return n;
}

}  // namespace shoal

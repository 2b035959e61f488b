#include "memory/page_directory.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace shoal {

static_assert(sizeof(std::atomic<uint8_t>) == 1 && std::atomic<uint8_t>::is_always_lock_free);

Result<PageDirectory> PageDirectory::create(uint64_t pages) {
  auto states = SparseArray<std::atomic<uint8_t>>::create(pages, "page directory");
  if (!states) return states.error();
  PageDirectory d;
  d.states_ = std::move(*states);  // zero-filled: kDormant everywhere
  return d;
}

PageDirectory::PageDirectory(PageDirectory&& o) noexcept
    : states_(std::move(o.states_)), present_(o.present_.load()) {}

PageDirectory& PageDirectory::operator=(PageDirectory&& o) noexcept {
  if (this != &o) {
    states_ = std::move(o.states_);
    present_ = o.present_.load();
  }
  return *this;
}

void PageDirectory::set_range(uint64_t first, uint64_t count, PageState s) {
  int64_t delta = 0;
  const bool mapped = s != PageState::kDormant;
  for (uint64_t p = first; p < first + count; ++p) {
    const auto old = static_cast<PageState>(
        states_[p].exchange(static_cast<uint8_t>(s), std::memory_order_acq_rel));
    const bool was_mapped = old != PageState::kDormant;
    delta += static_cast<int64_t>(mapped) - static_cast<int64_t>(was_mapped);
  }
  present_.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
}

uint64_t PageDirectory::dormant_run(uint64_t first, uint64_t limit) const {
  uint64_t n = 0;
  while (n < limit && first + n < pages() && state(first + n) == PageState::kDormant) ++n;
  return n;
}

void PageDirectory::for_each_mapped_run(
    const std::function<void(uint64_t first, uint64_t count)>& f, bool skip_unbacked) const {
  uint64_t run_start = 0, run_len = 0, next = 0;
  auto flush = [&] {
    if (run_len > 0) f(run_start, run_len);
    run_len = 0;
  };
  // The unbacked parts of the directory (16 MiB of guest per 4 KiB piece) are all dormant.
  states_.for_each_backed(
      [&](uint64_t first, uint64_t end) {
        if (first != next) flush();  // an unbacked piece in between ends the run
        for (uint64_t p = first; p < end; ++p) {
          if (state(p) == PageState::kDormant) {
            flush();
          } else {
            if (run_len == 0) run_start = p;
            ++run_len;
          }
        }
        next = end;
      },
      skip_unbacked);
  flush();
}

std::vector<uint64_t> PageDirectory::mapped_pages() const {
  std::vector<uint64_t> pages;
  auto walk = [&](bool skip_unbacked) {
    pages.clear();
    for_each_mapped_run(
        [&](uint64_t first, uint64_t count) {
          for (uint64_t p = first; p < first + count; ++p) pages.push_back(p);
        },
        skip_unbacked);
  };
  walk(true);
  if (pages.size() != present_pages()) walk(false);
  return pages;
}

}  // namespace shoal

#include "memory/page_directory.hpp"

#include <utility>

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

}  // namespace shoal

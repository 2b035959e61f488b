// CoherentMemory asking for pages before a fault needs them: read-ahead of first touches
// homed elsewhere, and the pages taken from this host together with a faulting one.
#include <algorithm>
#include <cstdint>

#include "memory/coherent_memory.hpp"
#include "shoal/clock.hpp"

namespace shoal {

// Pages that may still be asked for ahead of faults: never into the budget, which pages that
// arrive count against (with a margin of one read-ahead window for the faults themselves).
uint64_t CoherentMemory::room_to_ask_ahead() const {
  if (config_.budget_bytes == 0) return UINT64_MAX;
  const uint64_t used = held_pages() + requester_->requests_in_flight();
  const uint64_t limit = config_.budget_bytes / kPageBytes;
  return limit > used + kMaxReadAhead ? limit - used - kMaxReadAhead : 0;
}

// Reads ahead of a sequential run of first touches of pages homed on another host: each
// fault in the run asks for the next `window_` pages with kPrefetch (granted only where the
// page is dormant), doubling up to kMaxReadAhead, so the vCPU finds most pages mapped and a
// round trip is paid once per run instead of once per page. A fault outside the run, or a
// decline (the run reached pages in use), starts over.
void CoherentMemory::read_ahead(uint64_t page, NodeId home) {
  const bool sequential = home == run_home_ && page >= run_start_ && page <= run_next_;
  if (!sequential) {
    window_ = 0;
    run_home_ = home;
    run_start_ = page;
    run_next_ = page + 1;
    return;
  }
  window_ = std::min({window_ == 0 ? 4 : 2 * window_, kMaxReadAhead, room_to_ask_ahead()});
  // At most window_ pages ahead of this fault: a vCPU that catches up with grants still on
  // their way faults on each, and must not push the run further ahead every time.
  uint64_t q = std::max(run_next_, page + 1);
  for (const uint64_t end = page + 1 + window_; q < end && q < pages_ && home_of(q) == home; ++q)
    for (auto& m : requester_->prefetch(q, home)) {
      ++stats_.prefetches_sent;
      work_.push_back(std::move(m));
    }
  run_start_ = page;
  run_next_ = q;
}

void CoherentMemory::ask_for_group(uint64_t page) {
  std::vector<uint64_t> group = groups_.group_of(page, monotonic_ns());
  if (group.empty()) return;
  group.resize(std::min<uint64_t>(group.size(), room_to_ask_ahead()));
  for (const uint64_t q : group) {
    if (requester_->access(q) != Access::kNone || requester_->pending(q)) continue;
    auto out = requester_->on_fault(q, Access::kWrite, home_of(q));
    if (out.empty()) continue;
    ++stats_.group_pages_asked;
    group_tids_[q] = fault_tid_;
    for (auto& m : out) work_.push_back(std::move(m));
  }
}

}  // namespace shoal

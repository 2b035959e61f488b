#include "memory/page_groups.hpp"

namespace shoal {

void PageGroups::taken(uint64_t page, uint64_t now_ns) {
  forget_old(now_ns);
  taken_at_[page] = now_ns;
  order_.emplace_back(now_ns, page);
}

std::vector<uint64_t> PageGroups::group_of(uint64_t page, uint64_t now_ns) {
  forget_old(now_ns);
  std::vector<uint64_t> group;
  if (taken_at_.erase(page) == 0) return group;  // not taken from here lately: a lone fault
  // Newest first; entries whose page was taken again later (or asked for) are skipped.
  for (auto it = order_.rbegin(); it != order_.rend() && group.size() < kMaxGroup; ++it) {
    auto t = taken_at_.find(it->second);
    if (t == taken_at_.end() || t->second != it->first) continue;
    group.push_back(it->second);
    taken_at_.erase(t);
  }
  return group;
}

// Only what was taken within the window stays, and at most kMaxRemembered entries (a host
// that gives many pages away at once, a guest's memory moving to another host, must not grow
// this without bound); stale entries (pages taken again or asked for since) go when they
// reach the front.
void PageGroups::forget_old(uint64_t now_ns) {
  while (!order_.empty() &&
         (order_.front().first + window_ns_ <= now_ns || order_.size() >= kMaxRemembered)) {
    auto it = taken_at_.find(order_.front().second);
    if (it != taken_at_.end() && it->second == order_.front().first) taken_at_.erase(it);
    order_.pop_front();
  }
}

}  // namespace shoal

#include "memory/page_holds.hpp"

#include <algorithm>
#include <utility>

namespace shoal {

bool wait_outranks(uint32_t self, uint32_t taker, uint32_t hosts, uint64_t now_ns,
                   uint64_t turn_ns) {
  if (hosts <= 1 || self >= hosts || taker >= hosts) return self < taker;
  const uint64_t first = turn_ns == 0 ? 0 : (now_ns / turn_ns) % hosts;
  const auto place = [&](uint32_t h) { return (h + hosts - first) % hosts; };
  return place(self) < place(taker);
}

PageHolds::PageHolds(uint64_t hold_ns, uint64_t max_hold_ns, std::function<bool(uint32_t)> halted)
    : hold_ns_(hold_ns), max_hold_ns_(std::max(hold_ns, max_hold_ns)), halted_(std::move(halted)) {}

void PageHolds::faulted(uint32_t tid, uint64_t now_ns) {
  if (tid == 0) return;
  // Threads come and go (a kernel worker faulting for KVM, say): drop the ones that have
  // not faulted within the longest hold, which no longer extend anything.
  if (last_fault_ns_.size() >= 256)
    std::erase_if(last_fault_ns_, [&](const auto& e) { return e.second + max_hold_ns_ <= now_ns; });
  last_fault_ns_[tid] = now_ns;
}

void PageHolds::wait_began(uint32_t tid) {
  if (tid != 0) ++waits_[tid];
}

void PageHolds::wait_ended(uint32_t tid, uint64_t now_ns) {
  auto it = waits_.find(tid);
  if (it == waits_.end()) return;
  if (--it->second == 0) waits_.erase(it);
  faulted(tid, now_ns);  // it runs again from now: as good as a fault just now
}

void PageHolds::installed(uint64_t page, uint32_t tid, uint64_t now_ns) {
  forget_old(now_ns);
  installed_[page] = {now_ns, tid};
  installs_.emplace_back(now_ns, page);
}

uint64_t PageHolds::held_until(uint64_t page, uint64_t now_ns, bool waits_count) {
  auto it = installed_.find(page);
  if (it == installed_.end()) return 0;
  const Install in = it->second;
  uint64_t until = in.at_ns + hold_ns_;
  if (auto f = last_fault_ns_.find(in.tid); in.tid != 0 && f != last_fault_ns_.end())
    until = std::max(until, f->second + hold_ns_);
  const bool waiting = in.tid != 0 && waits_.count(in.tid) != 0;
  if (waits_count && waiting) until = std::max(until, now_ns + hold_ns_);
  until = std::min(until, in.at_ns + max_hold_ns_);
  // Asked last, and only while the page is held: it reads /proc (memory/thread_halt.hpp).
  const bool idle = now_ns < until && !waiting && in.tid != 0 && halted_ && halted_(in.tid);
  if (now_ns < until && !idle) return until;
  installed_.erase(it);  // the hold is over: nothing to remember
  return 0;
}

// Keeps only what arrived within the last max_hold_ns: the table stays as small as the
// pages that can still be held.
void PageHolds::forget_old(uint64_t now_ns) {
  while (!installs_.empty() && installs_.front().first + max_hold_ns_ <= now_ns) {
    auto it = installed_.find(installs_.front().second);
    if (it != installed_.end() && it->second.at_ns == installs_.front().first) installed_.erase(it);
    installs_.pop_front();
  }
}

}  // namespace shoal

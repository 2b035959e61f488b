// Pages taken from this host together come back together.
//
// A guest page walk needs every table on its way at once, and the hardware walker's accesses
// to guest page tables fault as writes at the nested level (memory/page_holds.hpp), so two
// hosts whose vCPUs both run kernel code take the kernel's top page tables from each other
// over and over. Fetched one fault at a time, each turn costs a round trip per table, and a
// host that got some of them loses them again before the rest arrive. So this host remembers
// the pages recalled from it (it held them writable, another host wanted them), and when a
// fault finds one of them taken within `window_ns`, it asks for the others taken within that
// window as well, in one go: the group crosses in about one round trip, and the faulting
// thread's holds keep it together (the requests are made on that thread's behalf).
//
// At most kMaxGroup pages ride along with one fault, the most recently taken first; a page
// is asked for once per loss (forgotten when asked for, remembered again when taken again).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <utility>
#include <vector>

namespace shoal {

class PageGroups {
 public:
  static constexpr size_t kMaxGroup = 32;
  static constexpr size_t kMaxRemembered = 4096;

  explicit PageGroups(uint64_t window_ns) : window_ns_(window_ns) {}

  // Another host took `page`, which this host held writable, at `now_ns`.
  void taken(uint64_t page, uint64_t now_ns);
  // A fault on `page` at `now_ns`: when it was taken from this host within the window, the
  // other pages taken within it (most recent first, at most kMaxGroup), now forgotten; else
  // nothing.
  std::vector<uint64_t> group_of(uint64_t page, uint64_t now_ns);

  size_t remembered() const { return taken_at_.size(); }

 private:
  void forget_old(uint64_t now_ns);

  uint64_t window_ns_;
  std::unordered_map<uint64_t, uint64_t> taken_at_;  // page -> when, within the window
  std::deque<std::pair<uint64_t, uint64_t>> order_;  // (when, page), oldest first
};

}  // namespace shoal

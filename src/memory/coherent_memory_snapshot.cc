// CoherentMemory's part of a pod snapshot: what this member holds, saved while the pod is
// settled and restored into a fresh member before any vCPU runs (docs/snapshot.md).
#include <algorithm>
#include <array>
#include <cstring>

#include "memory/coherent_memory.hpp"
#include "memory/snapshot_file.hpp"
#include "shoal/size.hpp"

namespace shoal {

CoherentMemory::Quiet CoherentMemory::quiet() {
  std::lock_guard lock(proto_mu_);
  Quiet q;
  q.quiet = !closed_ && !failed_ && work_.empty() && held_.empty() && waiting_.empty() &&
            discard_acks_pending_ == 0 && requester_->requests_in_flight() == 0 &&
            home_->transactions_in_flight() == 0;
  q.sent = stats_.messages_sent.load();
  q.received = stats_.messages_received.load();
  return q;
}

Result<CoherenceSnapshot> CoherentMemory::save(std::vector<uint64_t>& pages) {
  std::lock_guard lock(proto_mu_);
  if (closed_ || failed_) return Error("save: the pod's memory has stopped");
  if (requester_->requests_in_flight() != 0 || home_->transactions_in_flight() != 0 ||
      !work_.empty() || !held_.empty())
    return Error("save: pages are still moving");
  CoherenceSnapshot s;
  pages = directory_->mapped_pages();
  for (uint64_t p : pages)
    if (directory_->state(p) == PageState::kShared) s.shared.push_back(p);
  s.homes = home_->records();
  s.home_copies = home_->home_copy_pages();
  // A home copy beside this host's own mapped copy holds the same shared data: stored once.
  std::vector<uint64_t> all;
  all.reserve(pages.size() + s.home_copies.size());
  std::set_union(pages.begin(), pages.end(), s.home_copies.begin(), s.home_copies.end(),
                 std::back_inserter(all));
  pages = std::move(all);
  return s;
}

const uint8_t* CoherentMemory::saved_page(uint64_t page) const {
  if (directory_->state(page) == PageState::kDormant)
    if (const PageBytes* copy = home_->home_copy(page)) return copy->data();
  return base_ + page * kPageBytes;
}

namespace {

alignas(4096) const std::array<uint8_t, CoherentMemory::kPageBytes> kZeros{};

bool sorted_unique(const std::vector<uint64_t>& v, uint64_t limit) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] >= limit || (i > 0 && v[i] <= v[i - 1])) return false;
  return true;
}

}  // namespace

Status CoherentMemory::restore(const CoherenceSnapshot& s, const SnapshotFile& file, size_t hosts) {
  if (file.header().ram_bytes != pages_ * kPageBytes)
    return Error("the snapshot holds " + format_size(file.header().ram_bytes) +
                 " of guest RAM, the pod has " + format_size(pages_ * kPageBytes));
  if (!sorted_unique(s.shared, pages_)) return Error("shared pages: not sorted or out of range");
  if (!sorted_unique(s.home_copies, pages_))
    return Error("home copies: not sorted or out of range");
  std::lock_guard lock(proto_mu_);
  if (directory_->present_pages() != 0 || !home_->empty())
    return Error("restore: this member's memory is in use");
  for (const HomeDirectory::Record& r : s.homes) {
    if (r.page >= pages_)
      return Error("home entry of page " + std::to_string(r.page) + ": outside guest RAM");
    if (home_of(r.page) != config_.self)
      return Error("home entry of page " + std::to_string(r.page) + ": homed on host " +
                   std::to_string(home_of(r.page)));
    SHOAL_TRY(home_->restore(r, hosts), "");
  }
  auto is_in = [](const std::vector<uint64_t>& v, uint64_t p) {
    return std::binary_search(v.begin(), v.end(), p);
  };
  uint64_t copies = 0;
  // One page from the file: a home copy, a mapped page (write-protected when shared), or both.
  auto place = [&](uint64_t page, const uint8_t* data) -> Status {
    const bool copy = is_in(s.home_copies, page);
    copies += copy ? 1 : 0;
    if (copy) home_->restore_home_copy(page, PageBytes(data, data + kPageBytes));
    const bool shared = is_in(s.shared, page);
    if (copy && !shared && home_->state(page) != HomeDirectory::State::kShared)
      return Error("page " + format_hex(page) + ": a home copy of a page that is not shared");
    if (copy && !shared) return {};  // kept, not mapped here
    if (!budget_allows_one_more()) return Error("restore: over this host's memory budget");
    int64_t done = 0;
    const int rc =
        uffd_.copy(addr(page), reinterpret_cast<uint64_t>(data), kPageBytes, &done, shared);
    if (rc != 0) return errno_error("restore page " + format_hex(page) + ": UFFDIO_COPY", -rc);
    directory_->set_range(page, 1, shared ? PageState::kShared : PageState::kPresent);
    return {};
  };
  std::vector<uint8_t> block(file.header().block_bytes), scratch;
  for (uint64_t b = 0; b < file.blocks(); ++b) {
    SHOAL_TRY(file.read_block(b, block, scratch), "");
    Status placed{};
    file.for_each_run(b, [&](uint64_t page, uint64_t at, uint64_t count) {
      for (uint64_t i = 0; i < count && placed.ok(); ++i)
        placed = place(page + i, block.data() + (at + i) * kPageBytes);
    });
    if (!placed.ok()) return placed;
  }
  for (const PageExtent& e : file.index().extents) {
    if (e.kind != PageClass::kZero) continue;
    for (uint64_t p = e.first_page; p < uint64_t{e.first_page} + e.pages; ++p)
      SHOAL_TRY(place(p, kZeros.data()), "");
  }
  if (copies != s.home_copies.size())
    return Error("home copies: " + std::to_string(s.home_copies.size()) + " listed, " +
                 std::to_string(copies) + " stored");
  const uint64_t shared_here =
      static_cast<uint64_t>(std::count_if(s.shared.begin(), s.shared.end(), [&](uint64_t p) {
        return directory_->state(p) == PageState::kShared;
      }));
  if (shared_here != s.shared.size())
    return Error("shared pages: " + std::to_string(s.shared.size()) + " listed, " +
                 std::to_string(shared_here) + " stored");
  return {};
}

}  // namespace shoal

// The page source for dormant pages (memory/page_source.hpp). Serves first touches of
// dormant guest pages from the zero pool: picks a batch around the
// faulting page (BatchPolicy), UFFDIO_MOVEs that many zero pages in, falls back to
// UFFDIO_COPY where MOVE is missing or refuses, and prefetches ahead of a sequential stream.
// Never overwrites a present page: the page directory says which pages are dormant, and the
// kernel's EEXIST catches anything that raced. Owns no thread: the single host's FaultServer
// and a pod member's CoherentMemory both call it from their fault thread, so batching,
// prefetch, the budget and the counters are the same on one host and in a pod.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>

#include "memory/batch_policy.hpp"
#include "memory/page_directory.hpp"
#include "memory/page_source.hpp"
#include "memory/userfaultfd.hpp"
#include "memory/zero_pool.hpp"
#include "shoal/status.hpp"

namespace shoal {

// A fault unserved for this long means the server is stuck: the machine (or the pod) stops
// with an error rather than leave a vCPU waiting in the kernel for good.
inline constexpr uint64_t kStuckFaultNs = 10'000'000'000;

enum class FaultServing {
  kBatch,       // pool + UFFDIO_MOVE with adaptive batches (shoal's default)
  kSingleMove,  // pool + UFFDIO_MOVE, one page per fault (for comparison)
  kSingleCopy,  // UFFDIO_COPY of zeros, one page per fault (for comparison)
};

struct FaultServerStats {
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> duplicate_faults{0};  // page already present: woken only
  std::atomic<uint64_t> pages_served{0};
  std::atomic<uint64_t> pages_prefetched{0};  // of pages_served, moved ahead of any fault
  std::atomic<uint64_t> moves{0};
  std::atomic<uint64_t> copies{0};
  std::atomic<uint64_t> eexist{0};
  std::atomic<uint64_t> eagain{0};
  std::atomic<uint64_t> move_fallbacks{0};  // MOVE refused (ENOENT/EBUSY/EINVAL): COPY instead
  std::atomic<uint64_t> pages_copied_pool_empty{0};  // served as copied zeros: pool empty
  std::atomic<uint64_t> directory_repairs{0};        // "present" pages the kernel said were missing
  std::array<std::atomic<uint64_t>, 10> batch_log2{};  // faults served with 2^i..2^(i+1)-1 pages
};

// Which dormant pages this server may serve. A single host may serve every dormant page; a
// pod member only the dormant pages it is home for and nobody else holds, and it must record
// the ones it served as its own. Both are called on the fault thread.
struct DormantGate {
  std::function<bool(uint64_t page)> may_serve;
  std::function<void(uint64_t first, uint64_t count)> served;
};

class DormantServer final : public PageSource {
 public:
  struct Target {
    uint8_t* base;  // guest RAM mapping
    uint64_t bytes;
  };

  // `budget_bytes` (0: none) bounds present guest pages where no pool enforces it (COPY).
  static Result<std::unique_ptr<DormantServer>> create(const Userfaultfd& uffd, Target ram,
                                                       PageDirectory& directory, ZeroPool* pool,
                                                       FaultServing serving,
                                                       uint64_t budget_bytes = 0,
                                                       DormantGate gate = {});
  DormantServer(const DormantServer&) = delete;
  DormantServer& operator=(const DormantServer&) = delete;
  ~DormantServer() override;

  const char* name() const override { return "zero pool"; }
  // A fault on `page`: serves the batch around it (the page itself must be dormant and, with
  // a gate, one the gate lets this server serve), or wakes the waiter when it is present. A
  // dormant page is installed writable whatever the access: it is this host's alone.
  Status serve_fault(uint64_t page, Access access) override;
  const FaultServerStats& stats() const { return stats_; }

 private:
  DormantServer(const Userfaultfd& uffd, Target ram, PageDirectory& directory, ZeroPool* pool,
                FaultServing serving, uint64_t budget_bytes, DormantGate gate);
  bool servable(uint64_t page) const;
  void mark_present(uint64_t first, uint64_t count);
  // Moves zero pages from the pool into [first, first+count); with `wait` false it stops
  // (without error) when the pool has nothing ready.
  Status move_pages(uint64_t first, uint64_t count, bool wait = true);
  // After a sequential fault: serve whole windows ahead of the stream while no other fault is
  // waiting and the pool has pages to spare, so the vCPU runs into present pages.
  Status prefetch_after(const PageWindow& w);
  bool fault_pending() const;
  bool page_resident(uint64_t page) const;
  bool budget_allows(uint64_t pages) const;
  Status copy_pages(uint64_t first, uint64_t count);
  uint64_t addr(uint64_t page) const { return reinterpret_cast<uint64_t>(ram_.base) + page * 4096; }

  const Userfaultfd& uffd_;
  Target ram_;
  uint64_t pages_;
  PageDirectory& dir_;
  ZeroPool* pool_;
  FaultServing serving_;
  uint64_t budget_bytes_;
  bool move_ok_;
  DormantGate gate_;
  BatchPolicy policy_;
  uint8_t* zeros_ = nullptr;  // read-only zero source for UFFDIO_COPY
  uint64_t last_duplicate_ = ~uint64_t{0};
  uint64_t repeat_faults_ = 0;
  FaultServerStats stats_;
};

}  // namespace shoal

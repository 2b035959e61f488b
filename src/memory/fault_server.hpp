// Serves userfaultfd MISSING faults on dormant guest RAM: reads fault events, picks a batch
// around the faulting page (BatchPolicy), takes that many zero pages from the pool and
// UFFDIO_MOVEs them in, falling back to UFFDIO_COPY where MOVE is missing or refuses. Never
// overwrites a present page: the page directory says which pages are dormant, and the kernel's
// EEXIST catches anything that raced. Errors that would leave a vCPU waiting forever go to
// `on_fatal`, which stops the VM.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>

#include "memory/batch_policy.hpp"
#include "memory/page_directory.hpp"
#include "memory/userfaultfd.hpp"
#include "memory/zero_pool.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

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
  std::atomic<uint64_t> move_fallbacks{0};
  std::atomic<uint64_t> pages_copied_pool_empty{0};  // served as copied zeros: pool empty
  std::atomic<uint64_t> directory_repairs{0};  // "present" pages the kernel said were missing  //
                                               // MOVE refused (ENOENT/EBUSY/EINVAL): COPY instead
  std::array<std::atomic<uint64_t>, 10> batch_log2{};  // faults served with 2^i..2^(i+1)-1 pages
};

class FaultServer {
 public:
  struct Target {
    uint8_t* base;  // guest RAM mapping
    uint64_t bytes;
  };

  // `budget_bytes` (0: none) bounds present guest pages where no pool enforces it (COPY).
  FaultServer(const Userfaultfd& uffd, Target ram, PageDirectory& directory, ZeroPool* pool,
              FaultServing serving, std::function<void(const Error&)> on_fatal,
              uint64_t budget_bytes = 0);
  FaultServer(const FaultServer&) = delete;
  FaultServer& operator=(const FaultServer&) = delete;
  ~FaultServer();

  Status start();
  void stop();
  const FaultServerStats& stats() const { return stats_; }
  // How long the handler has been busy with one fault, 0 when idle (for the stuck watchdog).
  uint64_t busy_ns() const;

 private:
  void loop();
  Status serve(uint64_t page);
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
  std::function<void(const Error&)> on_fatal_;
  BatchPolicy policy_;
  uint8_t* zeros_ = nullptr;  // read-only zero source for UFFDIO_COPY
  UniqueFd stop_fd_;
  std::thread thread_;
  std::atomic<uint64_t> busy_since_ns_{0};
  uint64_t last_duplicate_ = ~uint64_t{0};
  uint64_t repeat_faults_ = 0;
  FaultServerStats stats_;
};

}  // namespace shoal

// Per-host pool of pre-zeroed pages that first touches of dormant guest memory are served
// from. The pool is a private anonymous mapping cut into 2 MiB chunks; a chunk is "full" once
// every page in it is populated and zero. The fault server takes runs of pages from the
// current chunk and UFFDIO_MOVEs them into the guest, which leaves holes behind; a worker
// thread refills spent chunks with IORING_OP_MADVISE(MADV_POPULATE_WRITE), which has the
// kernel allocate and zero the pages off the fault path. Refill starts when fewer than the low
// watermark of chunks are full and runs until the high watermark. The host memory budget
// bounds populated guest pages plus populated pool pages: a refill that would cross it does
// not happen, and a take() that cannot be served then fails with a named error.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shoal/size.hpp"
#include "shoal/status.hpp"

namespace shoal {

inline constexpr uint64_t kPoolChunkPages = 512;  // 2 MiB: the largest batch we move
inline constexpr uint64_t kPoolChunkBytes = kPoolChunkPages * kPageSize;

struct ZeroPoolConfig {
  uint64_t bytes = 64ull << 20;        // rounded up to whole chunks, at least two
  uint64_t low_watermark_chunks = 0;   // 0: a quarter of the chunks
  uint64_t high_watermark_chunks = 0;  // 0: all of them
  uint64_t budget_bytes = 0;           // 0: no budget
  // Guest pages populated on this host (the page directory's count), for the budget.
  const std::atomic<uint64_t>* guest_present_pages = nullptr;
};

struct ZeroPoolStats {
  std::atomic<uint64_t> takes{0};
  std::atomic<uint64_t> pages_out{0};
  std::atomic<uint64_t> stalls{0};  // take() found no full chunk and waited
  std::atomic<uint64_t> stall_ns{0};
  std::atomic<uint64_t> chunks_refilled{0};
  std::atomic<uint64_t> refill_ns{0};  // summed over refilled chunks
  std::atomic<uint64_t> min_full_chunks{~uint64_t{0}};
  std::atomic<uint64_t> pages_recycled{0};  // guest pages moved back in and re-zeroed
  std::atomic<uint64_t> recycle_memset_ns{0};
};

class ZeroPool {
 public:
  struct Run {
    uint8_t* addr;
    uint64_t pages;
    size_t chunk;
  };

  static Result<std::unique_ptr<ZeroPool>> create(const ZeroPoolConfig& config);
  ZeroPool(const ZeroPool&) = delete;
  ZeroPool& operator=(const ZeroPool&) = delete;
  ~ZeroPool();  // stops the refill worker

  // Adds `chunks` recycling chunks: a separate mapping registered with `uffd`, into which
  // discarded guest pages are moved (UFFDIO_MOVE needs a registered destination). A full one is
  // re-zeroed with memset by the worker — cheaper than populating fresh pages — and then
  // served like any other chunk. Call before start().
  Status enable_recycling(const class Userfaultfd& uffd, uint64_t chunks);
  // Moves up to `pages` present guest pages at `src` into the recycling chunks; returns how
  // many moved (0: no room, or MOVE refused; the caller zaps the rest).
  uint64_t recycle(uint8_t* src, uint64_t pages);
  // Starts the refill worker and fills the pool to its high watermark in the background.
  Status start();
  // Whether start() ran: before it nothing is ready and take() would wait for nothing.
  bool started() const { return started_.load(std::memory_order_acquire); }
  // Blocks until the high watermark is reached (or a refill failed, or the budget stops it).
  Status wait_until_full();
  // Up to `max_pages` contiguous zero pages (at least one). Waits for a refill when no chunk
  // is full; fails when the budget or a refill error leaves nothing to wait for.
  Result<Run> take(uint64_t max_pages);
  // Like take(), but gives nothing (pages == 0) rather than wait or fail: for prefetching.
  Run try_take(uint64_t max_pages);
  // The first `moved` pages of `run` left the pool (moved into the guest).
  void consumed(const Run& run, uint64_t moved);

  uint64_t chunks() const { return chunks_.size(); }
  uint64_t full_chunks() const;
  uint64_t populated_pages() const { return populated_pages_.load(std::memory_order_relaxed); }
  const ZeroPoolStats& stats() const { return stats_; }
  const ZeroPoolConfig& config() const { return config_; }

 private:
  enum class ChunkState : uint8_t {
    kEmpty,
    kRefilling,
    kFull,
    kCurrent,
    kRecycleFree,
    kRecycleFilling,
    kRecycleDirty,  // recycling chunks, before they are full
  };
  struct Chunk {
    uint8_t* addr = nullptr;
    ChunkState state = ChunkState::kEmpty;
    uint64_t populated = 0;  // pages
    uint64_t cursor = 0;     // next page to hand out (kCurrent)
    bool recycle = false;
  };

  explicit ZeroPool(const ZeroPoolConfig& config) : config_(config) {}
  void refill_loop(class IoRing& ring);
  // Applies the watermarks (starts or ends a refill phase) and says whether to refill now.
  bool refill_wanted_locked();
  // take() and try_take(): `wait` says whether an empty pool waits for a refill.
  Result<Run> take_run(uint64_t max_pages, bool wait);
  bool dirty_recycled_locked() const;
  bool budget_allows_locked(uint64_t extra_pages) const;
  std::string budget_error_locked(uint64_t wanted_pages) const;
  void note_level_locked();

  ZeroPoolConfig config_;
  uint8_t* base_ = nullptr;       // first chunk, 2 MiB-aligned
  uint8_t* unaligned_ = nullptr;  // what mmap returned
  uint64_t mapped_bytes_ = 0;
  std::vector<Chunk> chunks_;
  std::deque<size_t> full_;  // chunk indices, oldest first
  size_t current_ = SIZE_MAX;
  uint64_t refilling_ = 0;
  bool refill_active_ = false;  // between low and high watermark
  std::atomic<uint64_t> populated_pages_{0};
  std::string fatal_;                        // a refill failed: every later take() fails with this
  const class Userfaultfd* uffd_ = nullptr;  // for recycling
  uint8_t* recycle_area_ = nullptr;
  uint64_t recycle_bytes_ = 0;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // refill worker waits here
  std::condition_variable ready_cv_;  // take() waits here
  bool stop_ = false;
  std::thread worker_;
  ZeroPoolStats stats_;
  // How many chunks the refill fills up to: two at first, so a guest that touches little (a
  // short-lived microVM) never pays for a full pool, and the high watermark once the guest has
  // used up a whole chunk. Under mu_.
  uint64_t target_chunks_ = 2;
  std::atomic<bool> started_{false};
};

}  // namespace shoal

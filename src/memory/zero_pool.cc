#include "memory/zero_pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "base/io_ring.hpp"
#include "memory/userfaultfd.hpp"
#include "shoal/clock.hpp"
#include "shoal/size.hpp"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace shoal {

namespace {

constexpr unsigned kRingEntries = 32;
constexpr size_t kMaxRefillBatch = 16;

}  // namespace

Result<std::unique_ptr<ZeroPool>> ZeroPool::create(const ZeroPoolConfig& config) {
  std::unique_ptr<ZeroPool> pool(new ZeroPool(config));
  const uint64_t n = std::max<uint64_t>(2, (config.bytes + kPoolChunkBytes - 1) / kPoolChunkBytes);
  pool->chunks_.resize(n);
  auto& cfg = pool->config_;
  cfg.bytes = n * kPoolChunkBytes;
  if (cfg.high_watermark_chunks == 0 || cfg.high_watermark_chunks > n)
    cfg.high_watermark_chunks = n;
  if (cfg.low_watermark_chunks == 0) cfg.low_watermark_chunks = std::max<uint64_t>(1, n / 4);
  cfg.low_watermark_chunks = std::min(cfg.low_watermark_chunks, cfg.high_watermark_chunks);
  pool->target_chunks_ = std::min<uint64_t>(2, cfg.high_watermark_chunks);
  // Over-map by one chunk and align, so every chunk is a whole 2 MiB-aligned range.
  pool->mapped_bytes_ = cfg.bytes + kPoolChunkBytes;
  void* p = mmap(nullptr, pool->mapped_bytes_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_error("zero pool: mmap " + format_size(cfg.bytes));
  const uint64_t misalign = reinterpret_cast<uint64_t>(p) % kPoolChunkBytes;
  pool->base_ = static_cast<uint8_t*>(p) + (misalign == 0 ? 0 : kPoolChunkBytes - misalign);
  // A forked child sharing pool pages would make UFFDIO_MOVE fail with EBUSY; and moving 4 KiB
  // out of a transparent huge page splits it (hundreds of µs): no THP in the pool.
  if (madvise(p, pool->mapped_bytes_, MADV_DONTFORK) < 0)
    return errno_error("zero pool: MADV_DONTFORK");
  if (madvise(p, pool->mapped_bytes_, MADV_NOHUGEPAGE) < 0)
    return errno_error("zero pool: MADV_NOHUGEPAGE");
  // mapped_bytes_ and the unaligned start are kept for munmap.
  pool->unaligned_ = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < pool->chunks_.size(); ++i)
    pool->chunks_[i].addr = pool->base_ + i * kPoolChunkBytes;
  return pool;
}

ZeroPool::~ZeroPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  ready_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  if (unaligned_ != nullptr) munmap(unaligned_, mapped_bytes_);
  if (recycle_area_ != nullptr) munmap(recycle_area_, recycle_bytes_);
}

Status ZeroPool::enable_recycling(const Userfaultfd& uffd, uint64_t chunks) {
  recycle_bytes_ = (chunks + 1) * kPoolChunkBytes;
  void* p = mmap(nullptr, recycle_bytes_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_error("zero pool: recycling area");
  recycle_area_ = static_cast<uint8_t*>(p);
  madvise(p, recycle_bytes_, MADV_DONTFORK);
  madvise(p, recycle_bytes_, MADV_NOHUGEPAGE);
  const uint64_t misalign = reinterpret_cast<uint64_t>(p) % kPoolChunkBytes;
  uint8_t* first = recycle_area_ + (misalign == 0 ? 0 : kPoolChunkBytes - misalign);
  // Registered MISSING so that UFFDIO_MOVE can put guest pages here. Nothing may touch a
  // missing page of this area (it would fault to the fault server): only pages moved in are
  // ever written (memset) or moved out.
  SHOAL_TRY(uffd.register_missing(first, chunks * kPoolChunkBytes), "zero pool: recycling area");
  uffd_ = &uffd;
  std::lock_guard lock(mu_);
  for (uint64_t i = 0; i < chunks; ++i) {
    Chunk c;
    c.addr = first + i * kPoolChunkBytes;
    c.state = ChunkState::kRecycleFree;
    c.recycle = true;
    chunks_.push_back(c);
  }
  return {};
}

uint64_t ZeroPool::recycle(uint8_t* src, uint64_t pages) {
  std::lock_guard lock(mu_);
  if (uffd_ == nullptr) return 0;
  Chunk* target = nullptr;
  for (Chunk& c : chunks_)
    if (c.state == ChunkState::kRecycleFilling) target = &c;
  if (target == nullptr)
    for (Chunk& c : chunks_)
      if (c.state == ChunkState::kRecycleFree && target == nullptr) {
        target = &c;
        c.state = ChunkState::kRecycleFilling;
        c.populated = 0;
      }
  if (target == nullptr) return 0;  // every recycling chunk is full or in use
  const uint64_t n = std::min(pages, kPoolChunkPages - target->populated);
  int64_t done = 0;
  (void)uffd_->move(reinterpret_cast<uint64_t>(target->addr + target->populated * kPageSize),
                    reinterpret_cast<uint64_t>(src), n * kPageSize, &done);
  // Whatever the kernel says, the pages it moved are in the chunk now; an error (a hole in
  // the source, say) just ends this run and the caller zaps the rest.
  const uint64_t moved = static_cast<uint64_t>(done) / kPageSize;
  target->populated += moved;
  populated_pages_ += moved;
  stats_.pages_recycled += moved;
  if (target->populated == kPoolChunkPages) {
    target->state = ChunkState::kRecycleDirty;
    work_cv_.notify_one();
  }
  return moved;
}

Status ZeroPool::start() {
  auto ring = IoRing::create(kRingEntries);
  if (!ring) return ring.error().context("zero pool");
  {
    std::lock_guard lock(mu_);
    refill_active_ = true;  // fill up to the high watermark once
  }
  worker_ = std::thread([this, r = std::move(*ring)]() mutable {
    pthread_setname_np(pthread_self(), "zero-pool");
    refill_loop(r);
  });
  started_.store(true, std::memory_order_release);
  return {};
}

uint64_t ZeroPool::full_chunks() const {
  std::lock_guard lock(mu_);
  return full_.size();
}

bool ZeroPool::budget_allows_locked(uint64_t extra_pages) const {
  if (config_.budget_bytes == 0) return true;
  const uint64_t guest = config_.guest_present_pages ? config_.guest_present_pages->load() : 0;
  return (guest + populated_pages_.load() + extra_pages) * kPageSize <= config_.budget_bytes;
}

std::string ZeroPool::budget_error_locked(uint64_t wanted_pages) const {
  const uint64_t guest = config_.guest_present_pages ? config_.guest_present_pages->load() : 0;
  return "memory budget of " + format_size(config_.budget_bytes) +
         " exhausted: " + std::to_string(guest) + " guest pages present + " +
         std::to_string(populated_pages_.load()) + " pages in the zero pool, " +
         std::to_string(wanted_pages) + " more needed (raise --memory-budget)";
}

bool ZeroPool::refill_wanted_locked() {
  const uint64_t level = full_.size() + refilling_;
  if (level < config_.low_watermark_chunks) refill_active_ = true;
  if (level >= target_chunks_) refill_active_ = false;
  if (!refill_active_ || !fatal_.empty()) return false;
  for (const Chunk& c : chunks_)
    if (c.state == ChunkState::kEmpty && budget_allows_locked(kPoolChunkPages - c.populated))
      return true;
  return false;
}

void ZeroPool::note_level_locked() {
  uint64_t seen = stats_.min_full_chunks.load();
  if (full_.size() < seen) stats_.min_full_chunks = full_.size();
}

bool ZeroPool::dirty_recycled_locked() const {
  return std::any_of(chunks_.begin(), chunks_.end(),
                     [](const Chunk& c) { return c.state == ChunkState::kRecycleDirty; });
}

void ZeroPool::refill_loop(IoRing& ring) {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || dirty_recycled_locked() || refill_wanted_locked(); });
    if (stop_) return;
    // Recycled guest pages first: zeroing pages that exist is cheaper than populating new ones.
    for (Chunk& c : chunks_) {
      if (c.state != ChunkState::kRecycleDirty) continue;
      lock.unlock();
      const uint64_t t0 = monotonic_ns();
      std::memset(c.addr, 0, kPoolChunkBytes);
      stats_.recycle_memset_ns += monotonic_ns() - t0;
      lock.lock();
      c.state = ChunkState::kFull;
      c.cursor = 0;
      full_.push_back(static_cast<size_t>(&c - chunks_.data()));
      ready_cv_.notify_all();
    }
    std::vector<std::pair<size_t, uint64_t>> batch;  // chunk, start time
    for (size_t i = 0; i < chunks_.size() && batch.size() < kMaxRefillBatch; ++i) {
      Chunk& c = chunks_[i];
      if (c.state != ChunkState::kEmpty) continue;
      if (full_.size() + refilling_ >= target_chunks_) break;
      const uint64_t missing = kPoolChunkPages - c.populated;
      if (!budget_allows_locked(missing)) break;
      // Counted before the pages exist, so the budget check above sees them.
      populated_pages_ += missing;
      c.populated = kPoolChunkPages;
      c.state = ChunkState::kRefilling;
      ++refilling_;
      batch.emplace_back(i, monotonic_ns());
    }
    if (batch.empty()) continue;
    lock.unlock();
    for (const auto& [i, t0] : batch)
      ring.queue_madvise(chunks_[i].addr, kPoolChunkBytes, MADV_POPULATE_WRITE, i);
    const int submitted = ring.submit();
    std::string failure;
    if (submitted != static_cast<int>(batch.size()))
      failure = "zero pool refill: io_uring_submit: " +
                std::string(submitted < 0 ? std::strerror(-submitted) : "short submit");
    for (int k = 0; k < std::max(submitted, 0); ++k) {
      uint64_t chunk = 0;
      int res = 0;
      if (auto s = ring.wait(&chunk, &res); !s.ok()) {
        failure = s.error().message();
        break;
      }
      lock.lock();
      Chunk& c = chunks_[chunk];
      --refilling_;
      if (res < 0) {
        failure =
            "zero pool refill: madvise(MADV_POPULATE_WRITE): " + std::string(std::strerror(-res));
        c.state = ChunkState::kEmpty;
      } else {
        c.state = ChunkState::kFull;
        c.cursor = 0;
        full_.push_back(chunk);
        ++stats_.chunks_refilled;
        for (const auto& [i, t0] : batch)
          if (i == chunk) stats_.refill_ns += monotonic_ns() - t0;
      }
      lock.unlock();
      ready_cv_.notify_all();
    }
    lock.lock();
    if (!failure.empty()) {
      fatal_ = failure;
      ready_cv_.notify_all();
    }
  }
}

Result<ZeroPool::Run> ZeroPool::take(uint64_t max_pages) {
  return take_run(max_pages, true);
}

ZeroPool::Run ZeroPool::try_take(uint64_t max_pages) {
  auto run = take_run(max_pages, false);
  return run ? *run : Run{nullptr, 0, 0};
}

Result<ZeroPool::Run> ZeroPool::take_run(uint64_t max_pages, bool wait) {
  std::unique_lock lock(mu_);
  if (current_ == SIZE_MAX || chunks_[current_].cursor >= kPoolChunkPages) {
    if (current_ != SIZE_MAX) {
      Chunk& spent = chunks_[current_];
      if (spent.recycle) {
        // A recycling chunk is only ever filled from its start: zap what was handed out but
        // not moved (DONTNEED on missing pages is a no-op) and make it free again.
        madvise(spent.addr, kPoolChunkBytes, MADV_DONTNEED);
        populated_pages_ -= spent.populated;
        spent.populated = 0;
        spent.state = ChunkState::kRecycleFree;
      } else {
        // Spent: whatever was handed out but not moved is still there, populated and zero;
        // the refill populates the rest.
        spent.state = ChunkState::kEmpty;
      }
      current_ = SIZE_MAX;
      // A whole chunk went into the guest: it touches memory in earnest, so the pool grows
      // to its high watermark.
      target_chunks_ = config_.high_watermark_chunks;
    }
    while (full_.empty()) {
      if (!wait) {
        if (refill_wanted_locked()) work_cv_.notify_one();
        return Run{nullptr, 0, 0};
      }
      if (!fatal_.empty()) return Error(fatal_);
      if (refilling_ == 0 && !refill_wanted_locked()) {
        // Nothing in flight and nothing allowed to start: waiting would hang the vCPU.
        refill_active_ = true;
        if (!refill_wanted_locked()) return Error(budget_error_locked(max_pages));
      }
      ++stats_.stalls;
      const uint64_t t0 = monotonic_ns();
      work_cv_.notify_one();
      ready_cv_.wait(lock);
      stats_.stall_ns += monotonic_ns() - t0;
      if (stop_) return Error("zero pool stopped");
    }
    current_ = full_.front();
    full_.pop_front();
    chunks_[current_].state = ChunkState::kCurrent;
    note_level_locked();
  }
  Chunk& c = chunks_[current_];
  const uint64_t n = std::min(max_pages, kPoolChunkPages - c.cursor);
  Run run{c.addr + c.cursor * kPageSize, n, current_};
  c.cursor += n;
  ++stats_.takes;
  if (refill_wanted_locked()) work_cv_.notify_one();
  return run;
}

Status ZeroPool::wait_until_full() {
  std::unique_lock lock(mu_);
  target_chunks_ = config_.high_watermark_chunks;
  refill_active_ = true;
  work_cv_.notify_one();
  ready_cv_.wait(lock, [&] {
    return stop_ || !fatal_.empty() || full_.size() >= config_.high_watermark_chunks ||
           (refilling_ == 0 && !refill_wanted_locked());
  });
  if (!fatal_.empty()) return Error(fatal_);
  return {};
}

void ZeroPool::consumed(const Run& run, uint64_t moved) {
  std::lock_guard lock(mu_);
  chunks_[run.chunk].populated -= moved;
  populated_pages_ -= moved;
  stats_.pages_out += moved;
}

}  // namespace shoal

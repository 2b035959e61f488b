// The zero pool with its real io_uring refill worker (no KVM needed).
#include "memory/zero_pool.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "memory/page_directory.hpp"
#include "memory/userfaultfd.hpp"

namespace shoal {
namespace {

bool all_zero(const uint8_t* p, uint64_t bytes) {
  for (uint64_t i = 0; i < bytes; i += 512)
    if (p[i] != 0) return false;
  return true;
}

TEST(ZeroPool, FillsToTheHighWatermarkAndHandsOutZeroRuns) {
  ZeroPoolConfig c;
  c.bytes = 8 << 20;  // 4 chunks
  auto pool = ZeroPool::create(c);
  ASSERT_TRUE(pool.ok()) << pool.error().message();
  ZeroPool& p = **pool;
  EXPECT_EQ(p.chunks(), 4u);
  EXPECT_EQ(p.config().low_watermark_chunks, 1u);
  EXPECT_EQ(p.config().high_watermark_chunks, 4u);
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(p.wait_until_full().ok());
  EXPECT_EQ(p.full_chunks(), 4u);
  EXPECT_EQ(p.populated_pages(), 4 * kPoolChunkPages);
  auto run = p.take(100);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->pages, 100u);
  EXPECT_EQ(reinterpret_cast<uint64_t>(run->addr) % kPoolChunkBytes, 0u);  // chunk-aligned
  EXPECT_TRUE(all_zero(run->addr, run->pages * 4096));
  p.consumed(*run, 100);
  EXPECT_EQ(p.populated_pages(), 4 * kPoolChunkPages - 100);
  // A run never crosses a chunk: the rest of this chunk is 412 pages.
  auto rest = p.take(1000);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->pages, kPoolChunkPages - 100);
  EXPECT_EQ(rest->addr, run->addr + 100 * 4096);
}

TEST(ZeroPool, RefillsBelowTheLowWatermark) {
  ZeroPoolConfig c;
  c.bytes = 16 << 20;  // 8 chunks, low watermark 2
  auto pool = ZeroPool::create(c);
  ASSERT_TRUE(pool.ok());
  ZeroPool& p = **pool;
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(p.wait_until_full().ok());
  // Drain 7 chunks (writing into them, as a guest would after a MOVE... here in place).
  for (int i = 0; i < 7; ++i) {
    auto run = p.take(kPoolChunkPages);
    ASSERT_TRUE(run.ok());
    p.consumed(*run, kPoolChunkPages);
  }
  // Spent chunks are refilled in the background back to the high watermark.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (p.stats().chunks_refilled < 8 + 6 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GE(p.stats().chunks_refilled.load(), 8u + 6u);
  EXPECT_LE(p.stats().min_full_chunks.load(), 2u);
}

TEST(ZeroPool, BudgetStopsRefillsAndTakeFailsWithTheNamedError) {
  std::atomic<uint64_t> guest_pages{0};
  ZeroPoolConfig c;
  c.bytes = 8 << 20;
  c.budget_bytes = 6 << 20;  // room for three chunks, not four
  c.guest_present_pages = &guest_pages;
  auto pool = ZeroPool::create(c);
  ASSERT_TRUE(pool.ok());
  ZeroPool& p = **pool;
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(p.wait_until_full().ok());
  EXPECT_EQ(p.full_chunks(), 3u);
  for (int i = 0; i < 3; ++i) {
    auto run = p.take(kPoolChunkPages);
    ASSERT_TRUE(run.ok());
    p.consumed(*run, kPoolChunkPages);
    guest_pages += kPoolChunkPages;  // the pages now belong to the guest
  }
  auto more = p.take(1);
  ASSERT_FALSE(more.ok());
  EXPECT_NE(more.error().message().find("memory budget of 6 MiB exhausted"), std::string::npos)
      << more.error().message();
}

TEST(PageDirectory, RunsAndPresentCount) {
  auto d = PageDirectory::create(1 << 20);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->state(12345), PageState::kDormant);
  d->set_range(100, 10, PageState::kPresent);
  EXPECT_EQ(d->present_pages(), 10u);
  d->set_range(105, 10, PageState::kPresent);  // overlaps: counted once
  EXPECT_EQ(d->present_pages(), 15u);
  EXPECT_EQ(d->dormant_run(90, 64), 10u);
  EXPECT_EQ(d->dormant_run(100, 64), 0u);
  EXPECT_EQ(d->dormant_run(115, 64), 64u);
  EXPECT_EQ(d->dormant_run((1 << 20) - 3, 64), 3u);
  d->set_range(100, 15, PageState::kDormant);
  EXPECT_EQ(d->present_pages(), 0u);
}

}  // namespace
}  // namespace shoal

namespace shoal {
namespace {

TEST(ZeroPool, RecycledPagesComeBackZeroed) {
  auto uffd = Userfaultfd::open(true);
  if (!uffd || !uffd->has_move())
    GTEST_SKIP() << "skipped: needs userfaultfd with UFFDIO_MOVE (Linux >= 6.8)";
  ZeroPoolConfig c;
  c.bytes = 4 << 20;  // 2 chunks
  auto pool = ZeroPool::create(c);
  ASSERT_TRUE(pool.ok());
  ZeroPool& p = **pool;
  ASSERT_TRUE(p.enable_recycling(*uffd, 2).ok());
  ASSERT_TRUE(p.start().ok());
  ASSERT_TRUE(p.wait_until_full().ok());
  // "Guest" pages full of data: private anonymous memory, as guest RAM is.
  void* m =
      mmap(nullptr, kPoolChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  madvise(m, kPoolChunkBytes, MADV_NOHUGEPAGE);
  std::memset(m, 0xab, kPoolChunkBytes);
  uint64_t moved = 0;
  while (moved < kPoolChunkPages) {
    const uint64_t n = p.recycle(static_cast<uint8_t*>(m) + moved * 4096, kPoolChunkPages - moved);
    ASSERT_GT(n, 0u);
    moved += n;
  }
  // The source pages are gone (moved), and the worker re-zeroes the now-full chunk.
  unsigned char resident = 1;
  mincore(m, 4096, &resident);
  EXPECT_EQ(resident & 1, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (p.full_chunks() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(p.full_chunks(), 3u);
  EXPECT_EQ(p.stats().pages_recycled.load(), kPoolChunkPages);
  // Take all three chunks: every page handed out reads zero, the recycled one included.
  for (int i = 0; i < 3; ++i) {
    auto run = p.take(kPoolChunkPages);
    ASSERT_TRUE(run.ok());
    ASSERT_EQ(run->pages, kPoolChunkPages);
    EXPECT_TRUE(all_zero(run->addr, kPoolChunkBytes)) << "chunk " << i;
    p.consumed(*run, 0);
  }
  munmap(m, kPoolChunkBytes);
}

}  // namespace
}  // namespace shoal

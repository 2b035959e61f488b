// The fault server on a plain anonymous mapping: userfaultfd serves this process's own threads
// just as it serves KVM, so the protocol hazards are tested without a VM.
#include "memory/fault_server.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <thread>
#include <vector>

namespace shoal {
namespace {

constexpr uint64_t kBytes = 64 << 20;

class FaultServerTest : public ::testing::TestWithParam<FaultServing> {
 protected:
  void SetUp() override {
    void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    base_ = static_cast<uint8_t*>(p);
    madvise(base_, kBytes, MADV_NOHUGEPAGE);
  }
  void TearDown() override {
    server_.reset();
    pool_.reset();
    if (base_) munmap(base_, kBytes);
  }
  // Registers the mapping and starts serving it.
  void serve() {
    auto u = Userfaultfd::open(true);
    if (!u && u.error().message().find("not permitted") != std::string::npos)
      GTEST_SKIP() << "skipped: " << u.error().message();
    ASSERT_TRUE(u.ok()) << u.error().message();
    uffd_ = std::make_unique<Userfaultfd>(std::move(*u));
    ASSERT_TRUE(uffd_->register_missing(base_, kBytes).ok());
    auto d = PageDirectory::create(kBytes / 4096);
    ASSERT_TRUE(d.ok());
    dir_ = std::make_unique<PageDirectory>(std::move(*d));
    ZeroPoolConfig pc;
    pc.bytes = 16 << 20;
    auto pool = ZeroPool::create(pc);
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    ASSERT_TRUE(pool_->start().ok());
    server_ = std::make_unique<FaultServer>(*uffd_, FaultServer::Target{base_, kBytes}, *dir_,
                                            pool_.get(), GetParam(),
                                            [this](const Error& e) { fatal_ = e.message(); });
    ASSERT_TRUE(server_->start().ok());
  }

  // The server wakes the faulting thread inside the ioctl, then updates its books: wait until
  // it has left the fault it was serving before reading them.
  void settle() {
    while (server_->busy_ns() != 0) std::this_thread::yield();
  }

  uint8_t* base_ = nullptr;
  std::unique_ptr<Userfaultfd> uffd_;
  std::unique_ptr<PageDirectory> dir_;
  std::unique_ptr<ZeroPool> pool_;
  std::unique_ptr<FaultServer> server_;
  std::string fatal_;
};

TEST_P(FaultServerTest, FirstTouchesReadZeroAndKeepWrites) {
  serve();
  for (uint64_t page = 0; page < 2048; ++page) {
    uint64_t* p = reinterpret_cast<uint64_t*>(base_ + page * 4096);
    ASSERT_EQ(p[1], 0u) << "page " << page;
    p[0] = page + 1;
  }
  for (uint64_t page = 0; page < 2048; ++page)
    ASSERT_EQ(reinterpret_cast<uint64_t*>(base_ + page * 4096)[0], page + 1);
  settle();
  const auto& st = server_->stats();
  EXPECT_GE(dir_->present_pages(), 2048u)
      << "faults " << st.faults << " served " << st.pages_served << " prefetched "
      << st.pages_prefetched << " eexist " << st.eexist << " eagain " << st.eagain << " fallbacks "
      << st.move_fallbacks << " moves " << st.moves;
  EXPECT_EQ(dir_->present_pages(), server_->stats().pages_served.load());
  EXPECT_TRUE(fatal_.empty()) << fatal_;
  if (GetParam() == FaultServing::kBatch) {
    EXPECT_LT(server_->stats().faults.load(), 64u);
  }
}

TEST_P(FaultServerTest, NeverOverwritesAPresentPage) {
  // Page 5 exists before userfaultfd is registered, but the directory calls it dormant: the
  // batch around page 0 runs into it and must get EEXIST, not replace it.
  base_[5 * 4096] = 0x5a;
  serve();
  EXPECT_EQ(base_[0], 0);
  EXPECT_EQ(base_[5 * 4096], 0x5a);
  for (uint64_t page = 0; page < 64; ++page) EXPECT_EQ(base_[page * 4096 + 7], 0);
  if (GetParam() == FaultServing::kBatch) {
    EXPECT_GE(server_->stats().eexist.load(), 1u);
  }
  EXPECT_TRUE(fatal_.empty()) << fatal_;
}

TEST_P(FaultServerTest, FourThreadsOnTheSameAndInterleavedPages) {
  serve();
  constexpr uint64_t kPages = 4096;
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (uint64_t page = 0; page < kPages; ++page) {
        auto* p = reinterpret_cast<std::atomic<uint64_t>*>(base_ + page * 4096);
        p[t].store(page * 4 + t);             // same pages
        if (page % 4 == t) p[8].store(page);  // interleaved
      }
    });
  for (auto& th : threads) th.join();
  settle();
  for (uint64_t page = 0; page < kPages; ++page) {
    auto* p = reinterpret_cast<uint64_t*>(base_ + page * 4096);
    for (uint64_t t = 0; t < 4; ++t) ASSERT_EQ(p[t], page * 4 + t) << page;
    ASSERT_EQ(p[8], page);
  }
  EXPECT_EQ(dir_->present_pages(), server_->stats().pages_served.load());
  EXPECT_TRUE(fatal_.empty()) << fatal_;
}

INSTANTIATE_TEST_SUITE_P(Serving, FaultServerTest,
                         ::testing::Values(FaultServing::kBatch, FaultServing::kSingleMove,
                                           FaultServing::kSingleCopy),
                         [](const auto& info) {
                           switch (info.param) {
                             case FaultServing::kBatch:
                               return std::string("Batch");
                             case FaultServing::kSingleMove:
                               return std::string("SingleMove");
                             default:
                               return std::string("SingleCopy");
                           }
                         });

}  // namespace
}  // namespace shoal

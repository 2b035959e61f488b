// A lazy restore without a VM: a snapshot of one mapping is restored into a fresh one that
// userfaultfd serves through the FaultServer with a SnapshotSource, as a restored guest's RAM
// is. This process's threads fault on it as KVM would for a vCPU.
#include "memory/snapshot_source.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <ostream>
#include <thread>

#include "memory/fault_server.hpp"
#include "memory/snapshot_writer.hpp"
#include "shoal/unique_fd.hpp"
#include "support/test_mapping.hpp"

namespace shoal {
namespace {

constexpr uint64_t kRamBytes = 32 << 20;
constexpr uint64_t kPages = kRamBytes / 4096;

uint8_t* map_ram() {
  return test::map_test_ram(kRamBytes);
}

uint64_t word(uint64_t page, uint64_t i) {
  return (page + 1) * 0x9E3779B97F4A7C15ull + i;
}

// Data in pages [0, 2048) except every fourth (zero), and in [6000, 6100); the rest dormant.
bool has_data(uint64_t p) {
  return (p < 2048 && p % 4 != 0) || (p >= 6000 && p < 6100);
}
bool present(uint64_t p) {
  return p < 2048 || (p >= 6000 && p < 6100);
}

// How the lazy restore gets its blocks: faults alone, or a background loader too, reading
// ahead on an io_uring (buffered or O_DIRECT) or one block at a time with pread.
struct Loading {
  bool loader = false;
  SnapshotLoaderConfig config;
};

// For the test names ctest lists (the default prints the struct's bytes, padding included).
void PrintTo(const Loading& l, std::ostream* os) {
  *os << (l.loader ? "loader, depth " + std::to_string(l.config.depth) +
                         (l.config.direct ? ", O_DIRECT" : "")
                   : "faults only");
}

class SnapshotSourceTest : public ::testing::TestWithParam<Loading> {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "/shoal-restore-" + std::to_string(getpid()) + ".snap";
    uint8_t* source = map_ram();
    auto d = PageDirectory::create(kPages);
    ASSERT_TRUE(d.ok());
    for (uint64_t p = 0; p < kPages; ++p) {
      if (!present(p)) continue;
      if (has_data(p))
        for (uint64_t i = 0; i < 512; ++i)
          reinterpret_cast<uint64_t*>(source + p * 4096)[i] = word(p, i);
      d->set_range(p, 1, PageState::kPresent);
    }
    SnapshotInput in;
    in.ram = source;
    in.ram_bytes = kRamBytes;
    in.directory = &*d;
    in.vcpus = 1;
    in.working_set = {6050, 6051};
    auto w = write_snapshot(path_, in);
    ASSERT_TRUE(w.ok()) << w.error().message();
    munmap(source, kRamBytes);

    auto f = SnapshotFile::open(path_);
    ASSERT_TRUE(f.ok()) << f.error().message();
    file_ = std::move(*f);
    auto u = Userfaultfd::open(true);
    if (!u && u.error().message().find("not permitted") != std::string::npos)
      GTEST_SKIP() << "skipped: " << u.error().message();
    ASSERT_TRUE(u.ok()) << u.error().message();
    uffd_ = std::make_unique<Userfaultfd>(std::move(*u));
    ram_ = map_ram();
    ASSERT_TRUE(uffd_->register_missing(ram_, kRamBytes).ok());
    auto dir = PageDirectory::create(kPages);
    ASSERT_TRUE(dir.ok());
    dir_ = std::make_unique<PageDirectory>(std::move(*dir));
    if (GetParam().config.direct && !UniqueFd(::open(path_.c_str(), O_RDONLY | O_DIRECT)).valid())
      GTEST_SKIP() << "skipped: " << path_ << " cannot be opened with O_DIRECT here";
    auto on_fatal = [this](const Error& e) {
      std::lock_guard lock(fatal_mu_);
      if (fatal_.empty()) fatal_ = e.message();
    };
    source_ = std::make_unique<SnapshotSource>(*uffd_, FaultServer::Target{ram_, kRamBytes}, *dir_,
                                               file_, on_fatal, GetParam().config);
    server_ =
        std::make_unique<FaultServer>(*uffd_, FaultServer::Target{ram_, kRamBytes}, *dir_, nullptr,
                                      FaultServing::kSingleCopy, on_fatal, 0, source_.get());
    ASSERT_TRUE(server_->start().ok());
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (source_) source_->stop();
    server_.reset();
    source_.reset();
    if (ram_) munmap(ram_, kRamBytes);
    ::unlink(path_.c_str());
  }
  // Reads every page from `threads` threads, each its own interleaved share.
  void check_all(int threads) {
    std::vector<std::thread> readers;
    std::atomic<uint64_t> bad{0};
    for (int t = 0; t < threads; ++t)
      readers.emplace_back([&, t] {
        for (uint64_t p = static_cast<uint64_t>(t); p < kPages;
             p += static_cast<uint64_t>(threads)) {
          const auto* w = reinterpret_cast<const volatile uint64_t*>(ram_ + p * 4096);
          for (uint64_t i = 0; i < 512; i += 73)
            if (w[i] != (has_data(p) ? word(p, i) : 0)) ++bad;
        }
      });
    for (auto& r : readers) r.join();
    EXPECT_EQ(bad.load(), 0u);
    EXPECT_EQ(fatal(), "");
  }
  std::string fatal() {
    std::lock_guard lock(fatal_mu_);
    return fatal_;
  }
  void start_loader_if_any() {
    if (GetParam().loader) {
      ASSERT_TRUE(source_->start_loader().ok());
    }
  }

  std::string path_;
  std::shared_ptr<const SnapshotFile> file_;
  std::unique_ptr<Userfaultfd> uffd_;
  uint8_t* ram_ = nullptr;
  std::unique_ptr<PageDirectory> dir_;
  std::unique_ptr<SnapshotSource> source_;
  std::unique_ptr<FaultServer> server_;
  std::mutex fatal_mu_;
  std::string fatal_;
};

TEST_P(SnapshotSourceTest, EveryPageReadsAsSavedWhileTheLoaderRacesTheFaults) {
  start_loader_if_any();
  check_all(4);
  ASSERT_TRUE(source_->load_all().ok());
  EXPECT_EQ(source_->blocks_loaded(), source_->blocks());
  const SnapshotLoadStats& s = source_->stats();
  EXPECT_EQ(s.pages_installed, 2048u - 512u + 100u);
  EXPECT_EQ(s.blocks_by_fault + s.blocks_by_loader, source_->blocks());
  if (!GetParam().loader) {
    EXPECT_GT(s.blocks_by_fault, 0u);
  }
  if (GetParam().loader) {
    EXPECT_EQ(s.direct, GetParam().config.direct);
  }
}

TEST_P(SnapshotSourceTest, ADiscardBeforeItsBlockLoadsIsNotUndoneByTheLoad) {
  // Page 6060 is stored; the guest discards it before touching it, then reads zeros.
  ASSERT_TRUE(source_->load_pages(6060, 1).ok());
  uint8_t* page = ram_ + 6060 * 4096;
  ASSERT_EQ(madvise(page, 4096, MADV_DONTNEED), 0);
  dir_->set_range(6060, 1, PageState::kDormant);
  start_loader_if_any();
  ASSERT_TRUE(source_->load_all().ok());
  EXPECT_FALSE(source_->pending(6060));
  EXPECT_EQ(*reinterpret_cast<const volatile uint64_t*>(page), 0u);  // served as dormant: zeros
  EXPECT_EQ(*reinterpret_cast<const volatile uint64_t*>(page + 4096), word(6061, 0));
  EXPECT_EQ(fatal_, "");
}

TEST_P(SnapshotSourceTest, ACorruptBlockStopsTheRestoreAndNoFaultWaitsForIt) {
  // One byte of block 1 flipped on disk: whoever reads it (the loader or a fault) stops the
  // restore naming it, and a fault on it then fails instead of waiting for a loader.
  ASSERT_GE(file_->blocks(), 3u);
  const uint64_t at = file_->index().blocks[1].offset + 100;
  {
    const int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    uint8_t b = 0;
    ASSERT_EQ(pread(fd, &b, 1, static_cast<off_t>(at)), 1);
    b ^= 0x40;
    ASSERT_EQ(pwrite(fd, &b, 1, static_cast<off_t>(at)), 1);
    ::close(fd);
  }
  start_loader_if_any();
  // A page of block 1 (the working set's two pages fill slots 0-1, then pages 1, 2, 3, 5, ...).
  uint64_t page = 0;
  for (uint64_t p = 0; p < kPages && page == 0; ++p)
    if (file_->slot_of(p) && file_->block_of_slot(*file_->slot_of(p)) == 1) page = p;
  ASSERT_NE(page, 0u);
  const Status s = source_->load_pages(page, 1);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(fatal().find("snapshot block 1: CRC mismatch (corrupted)"), std::string::npos)
      << fatal();
  EXPECT_TRUE(source_->pending(page));
  source_->stop();  // ends a loader still reading the other blocks
}

Loading with_loader(unsigned depth, bool direct) {
  return Loading{true, SnapshotLoaderConfig{depth, direct}};
}

INSTANTIATE_TEST_SUITE_P(Loader, SnapshotSourceTest,
                         ::testing::Values(Loading{}, with_loader(8, false), with_loader(8, true),
                                           with_loader(0, false)),
                         [](const auto& info) {
                           if (!info.param.loader) return std::string("FaultsOnly");
                           if (info.param.config.depth == 0) return std::string("WithPreadLoader");
                           return std::string(info.param.config.direct ? "WithDirectLoader"
                                                                       : "WithLoader");
                         });

}  // namespace
}  // namespace shoal

// The working set's window on a plain mapping served through userfaultfd (this process's own
// threads fault as KVM's would): writes to mapped pages and first touches are seen, reads of
// mapped pages are not, and closing the window lifts every protection.
#include "memory/working_set.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <thread>

#include "memory/fault_server.hpp"

namespace shoal {
namespace {

constexpr uint64_t kBytes = 16 << 20;

class WorkingSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    base_ = static_cast<uint8_t*>(p);
    madvise(base_, kBytes, MADV_NOHUGEPAGE);
    auto u = Userfaultfd::open(true);
    if (!u && u.error().message().find("not permitted") != std::string::npos)
      GTEST_SKIP() << "skipped: " << u.error().message();
    ASSERT_TRUE(u.ok()) << u.error().message();
    uffd_ = std::make_unique<Userfaultfd>(std::move(*u));
    ASSERT_TRUE(uffd_->register_missing_wp(base_, kBytes).ok());
    auto d = PageDirectory::create(kBytes / 4096);
    ASSERT_TRUE(d.ok());
    dir_ = std::make_unique<PageDirectory>(std::move(*d));
    auto t = WorkingSetTracker::create(*uffd_, {base_, kBytes}, *dir_);
    ASSERT_TRUE(t.ok());
    tracker_ = std::move(*t);
    server_ = std::make_unique<FaultServer>(
        *uffd_, FaultServer::Target{base_, kBytes}, *dir_, nullptr, FaultServing::kSingleCopy,
        [this](const Error& e) { fatal_ = e.message(); }, 0, nullptr, tracker_.get());
    ASSERT_TRUE(server_->start().ok());
  }
  void TearDown() override {
    server_.reset();
    tracker_.reset();
    if (base_) munmap(base_, kBytes);
  }
  volatile uint64_t& word(uint64_t page) {
    return *reinterpret_cast<volatile uint64_t*>(base_ + page * 4096);
  }
  // On another thread, as a vCPU would: this one must never block on its own fault thread.
  template <class F>
  void as_guest(F f) {
    std::thread t(f);
    t.join();
  }

  uint8_t* base_ = nullptr;
  std::unique_ptr<Userfaultfd> uffd_;
  std::unique_ptr<PageDirectory> dir_;
  std::unique_ptr<WorkingSetTracker> tracker_;
  std::unique_ptr<FaultServer> server_;
  std::string fatal_;
};

TEST_F(WorkingSetTest, WritesAndFirstTouchesInTheWindowAreTheWorkingSet) {
  static_assert(kTrackGranulePages == 64, "the pages below are laid out for 64-page granules");
  as_guest([&] {
    for (uint64_t p = 0; p < 100; ++p) word(p) = p;  // mapped before the window
  });
  ASSERT_TRUE(tracker_->open_window().ok());
  as_guest([&] {
    for (uint64_t p = 10; p < 20; ++p) word(p) = p * 3;  // writes: their granule is seen
    uint64_t sum = 0;
    for (uint64_t p = 70; p < 80; ++p) sum += word(p);  // reads of mapped pages: not seen
    EXPECT_EQ(sum, 745u);
    for (uint64_t p = 200; p < 205; ++p) EXPECT_EQ(word(p), 0u);  // first touches: seen
  });
  auto ws = tracker_->close_window();
  ASSERT_TRUE(ws.ok()) << ws.error().message();
  // One write-protect fault opened the whole first granule (pages 0..63, all mapped).
  std::vector<uint64_t> expected;
  for (uint64_t p = 0; p < kTrackGranulePages; ++p) expected.push_back(p);
  for (uint64_t p = 200; p < 205; ++p) expected.push_back(p);
  EXPECT_EQ(*ws, expected);
  EXPECT_EQ(tracker_->write_faults(), 1u);
  // Closed: writes go straight through again, and nothing is recorded.
  as_guest([&] {
    for (uint64_t p = 0; p < 100; ++p) word(p) = word(p) + 1;
  });
  EXPECT_EQ(tracker_->write_faults(), 1u);
  for (uint64_t p = 0; p < 100; ++p) EXPECT_EQ(word(p), (p >= 10 && p < 20 ? p * 3 : p) + 1) << p;
  EXPECT_EQ(fatal_, "");
  // A second window starts empty; a write in the second granule sees its mapped pages.
  ASSERT_TRUE(tracker_->open_window().ok());
  as_guest([&] { word(70) = 1; });
  ws = tracker_->close_window();
  ASSERT_TRUE(ws.ok());
  expected.clear();
  for (uint64_t p = 64; p < 100; ++p) expected.push_back(p);
  EXPECT_EQ(*ws, expected);
  EXPECT_FALSE(tracker_->close_window().ok());
}

}  // namespace
}  // namespace shoal

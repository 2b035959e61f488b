// The replica's files: a checkpoint reaches memory.img and state.snap; a journal a crash left
// behind is applied on recovery; a half-written one is ignored; a damaged one is an error.
#include "memory/replica_store.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace shoal {
namespace {

constexpr uint64_t kRamBytes = 4 << 20;

class ReplicaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/shoal-replica-store-" + std::to_string(getpid());
    ram_.assign(kRamBytes, 0);
  }
  void TearDown() override {
    const ReplicaPaths p(dir_);
    for (const std::string& f : {p.image, p.state, p.journal, p.journal + ".partial"})
      ::unlink(f.c_str());
    ::rmdir(dir_.c_str());
  }
  void fill(uint64_t page, uint8_t v) { std::memset(ram_.data() + page * 4096, v, 4096); }
  SnapshotInput input(const std::vector<uint64_t>& pages) {
    pages_ = pages;
    SnapshotInput in;
    in.ram = ram_.data();
    in.ram_bytes = kRamBytes;
    in.pages = &pages_;
    in.vcpus = 1;
    in.state = {9, 9};
    return in;
  }
  std::vector<uint8_t> image() {
    std::ifstream f(ReplicaPaths(dir_).image, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
  }

  std::string dir_;
  std::vector<uint8_t> ram_;
  std::vector<uint64_t> pages_;
};

TEST_F(ReplicaStoreTest, CheckpointsReachTheImageAndACrashedOneIsFinishedOnRecovery) {
  auto store = ReplicaStore::create(dir_, kRamBytes);
  ASSERT_TRUE(store.ok()) << store.error().message();
  fill(1, 0x11);
  fill(2, 0x22);
  ASSERT_TRUE(store->commit(input({1, 2, 3})).ok());
  std::vector<uint8_t> img = image();
  ASSERT_EQ(img.size(), kRamBytes);
  EXPECT_EQ(img[4096], 0x11);
  EXPECT_EQ(img[2 * 4096 + 4095], 0x22);
  EXPECT_TRUE(is_replica_dir(dir_));
  EXPECT_FALSE(ReplicaStore::create(dir_, kRamBytes).ok());  // never over a replica

  // A crash right after the next journal was renamed into place, before it was applied.
  fill(2, 0);     // discarded: must read zero afterwards
  fill(7, 0x77);  // new
  const ReplicaPaths p(dir_);
  ASSERT_TRUE(write_snapshot(p.journal, input({2, 7})).ok());
  std::ofstream(p.journal + ".partial") << "half a journal";  // and one that never finished
  auto state = recover_replica(dir_);
  ASSERT_TRUE(state.ok()) << state.error().message();
  EXPECT_EQ(*state, p.state);
  EXPECT_NE(::access(p.journal.c_str(), F_OK), 0);
  img = image();
  EXPECT_EQ(img[4096], 0x11);
  EXPECT_EQ(img[2 * 4096], 0);
  EXPECT_EQ(img[7 * 4096 + 100], 0x77);
  auto f = SnapshotFile::open(p.state);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->get()->slot_of(7).has_value());

  // Recovery again changes nothing.
  ASSERT_TRUE(recover_replica(dir_).ok());
  EXPECT_EQ(image(), img);
}

TEST_F(ReplicaStoreTest, ADamagedJournalIsAnErrorNotSkipped) {
  auto store = ReplicaStore::create(dir_, kRamBytes);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store->commit(input({0})).ok());
  std::ofstream(ReplicaPaths(dir_).journal) << "SHOALSNP but not really";
  auto state = recover_replica(dir_);
  ASSERT_FALSE(state.ok());
  EXPECT_NE(state.error().message().find("journal"), std::string::npos) << state.error().message();
}

}  // namespace
}  // namespace shoal

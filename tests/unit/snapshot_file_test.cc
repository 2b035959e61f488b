// The snapshot file: its format's checks, the writer and the reader, and a lazy restore served
// through userfaultfd on a plain mapping (this process's threads fault as KVM would).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "memory/fault_server.hpp"
#include "memory/snapshot_file.hpp"
#include "memory/snapshot_source.hpp"
#include "memory/snapshot_writer.hpp"
#include "shoal/crc32c.hpp"
#include "support/test_mapping.hpp"

namespace shoal {
namespace {

constexpr uint64_t kRamBytes = 16 << 20;
constexpr uint64_t kPages = kRamBytes / 4096;

uint8_t* map_ram() {
  return test::map_test_ram(kRamBytes);
}

uint64_t pattern(uint64_t page, uint64_t word) {
  return (page + 1) * 0x9E3779B97F4A7C15ull ^ word;
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

void spill(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A guest's RAM as a snapshot sees it: pages 0..299 present (every third all zero, the others
// filled with a pattern, some only in their first word), 1000..1099 present with data, 2000
// present and zero; the rest dormant.
class SnapshotFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ram_ = map_ram();
    auto d = PageDirectory::create(kPages);
    ASSERT_TRUE(d.ok());
    dir_ = std::make_unique<PageDirectory>(std::move(*d));
    auto fill = [&](uint64_t p, bool zero) {
      auto* w = reinterpret_cast<uint64_t*>(ram_ + p * 4096);
      if (!zero)
        for (uint64_t i = 0; i < 512; i += (p % 2 ? 1 : 511)) w[i] = pattern(p, i);
      dir_->set_range(p, 1, PageState::kPresent);
    };
    for (uint64_t p = 0; p < 300; ++p) fill(p, p % 3 == 0);
    for (uint64_t p = 1000; p < 1100; ++p) fill(p, false);
    fill(2000, true);
    path_ = ::testing::TempDir() + "/shoal-snapshot-" + std::to_string(getpid()) + ".snap";
  }
  void TearDown() override {
    munmap(ram_, kRamBytes);
    ::unlink(path_.c_str());
  }
  SnapshotWriteStats write(std::vector<uint64_t> working_set = {},
                           uint32_t block_bytes = 64 << 10) {
    SnapshotInput in;
    in.ram = ram_;
    in.ram_bytes = kRamBytes;
    in.directory = dir_.get();
    in.vcpus = 2;
    in.state = {1, 2, 3, 4, 5};
    in.working_set = std::move(working_set);
    in.block_bytes = block_bytes;
    auto s = write_snapshot(path_, in);
    EXPECT_TRUE(s.ok()) << s.error().message();
    return s.ok() ? *s : SnapshotWriteStats{};
  }
  std::string open_error() {
    auto f = SnapshotFile::open(path_);
    return f.ok() ? std::string("opened") : f.error().message();
  }

  uint8_t* ram_ = nullptr;
  std::unique_ptr<PageDirectory> dir_;
  std::string path_;
};

TEST_F(SnapshotFileTest, StoresDataPagesOnceZeroPagesAsExtentsAndDormantPagesNotAtAll) {
  const SnapshotWriteStats st = write();
  EXPECT_EQ(st.mapped_pages, 401u);
  EXPECT_EQ(st.zero_pages, 101u);
  EXPECT_EQ(st.stored_pages, 300u);
  auto f = SnapshotFile::open(path_);
  ASSERT_TRUE(f.ok()) << f.error().message();
  const SnapshotFile& file = **f;
  EXPECT_EQ(file.header().ram_bytes, kRamBytes);
  EXPECT_EQ(file.header().vcpus, 2u);
  EXPECT_EQ(file.state(), (std::vector<uint8_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(file.blocks(), 300u / 16 + 1);
  EXPECT_FALSE(file.slot_of(0).has_value());     // zero
  EXPECT_FALSE(file.slot_of(500).has_value());   // dormant
  EXPECT_FALSE(file.slot_of(2000).has_value());  // zero
  // Every stored page's bytes come back from its block, and each slot is used once.
  std::vector<uint8_t> block(file.header().block_bytes), scratch;
  std::vector<bool> seen(kPages);
  for (uint64_t b = 0; b < file.blocks(); ++b) {
    ASSERT_TRUE(file.read_block(b, block, scratch).ok());
    file.for_each_run(b, [&](uint64_t page, uint64_t at, uint64_t count) {
      for (uint64_t i = 0; i < count; ++i) {
        EXPECT_FALSE(seen[page + i]);
        seen[page + i] = true;
        EXPECT_EQ(file.slot_of(page + i), b * file.header().pages_per_block() + at + i);
        EXPECT_EQ(std::memcmp(block.data() + (at + i) * 4096, ram_ + (page + i) * 4096, 4096), 0)
            << "page " << page + i;
      }
    });
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), 300);
  // Mostly-zero pages compress: far below 300 raw pages.
  EXPECT_LT(st.compressed_bytes, 300u * 4096 / 2);
}

TEST_F(SnapshotFileTest, TheWorkingSetIsStoredFirst) {
  write({1050, 7, 5000 /* dormant: ignored */, 3 /* zero: ignored */, 1050});
  auto f = SnapshotFile::open(path_);
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ((*f)->header().working_set_pages, 2u);
  EXPECT_EQ((*f)->slot_of(7), 0u);
  EXPECT_EQ((*f)->slot_of(1050), 1u);
  EXPECT_EQ((*f)->slot_of(1), 2u);
}

TEST_F(SnapshotFileTest, EveryDamagedHeaderByteIsRefused) {
  write();
  const std::vector<uint8_t> good = slurp(path_);
  for (size_t i = 0; i < kSnapshotHeaderBytes; ++i) {
    std::vector<uint8_t> bad = good;
    bad[i] ^= 0x5a;
    spill(path_, bad);
    const std::string e = open_error();
    EXPECT_NE(e, "opened") << "byte " << i;
    EXPECT_NE(e.find("snapshot header:"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

TEST_F(SnapshotFileTest, TruncatedCorruptedAndWrongVersionFilesGetOneLineErrors) {
  write();
  const std::vector<uint8_t> good = slurp(path_);
  spill(path_, std::vector<uint8_t>(good.begin(), good.begin() + 50));
  EXPECT_NE(open_error().find("truncated: 50 bytes"), std::string::npos) << open_error();
  spill(path_, std::vector<uint8_t>(good.begin(), good.end() - 10));
  EXPECT_NE(open_error().find("outside the file"), std::string::npos) << open_error();
  spill(path_, {});
  EXPECT_NE(open_error().find("truncated: 0 bytes"), std::string::npos) << open_error();

  // A damaged index or state: its CRC.
  std::vector<uint8_t> bad = good;
  bad[good.size() - 3] ^= 1;
  spill(path_, bad);
  EXPECT_NE(open_error().find("snapshot index: CRC mismatch"), std::string::npos) << open_error();

  // A damaged block opens (blocks are checked as they are read) and fails when read.
  bad = good;
  bad[kSnapshotHeaderBytes + 20] ^= 1;
  spill(path_, bad);
  auto f = SnapshotFile::open(path_);
  ASSERT_TRUE(f.ok()) << f.error().message();
  std::vector<uint8_t> block((*f)->header().block_bytes), scratch;
  Status s = (*f)->read_block(0, block, scratch);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message(), "snapshot block 0: CRC mismatch (corrupted)");

  // Version 2, with a valid CRC: refused by version, not by CRC.
  bad = good;
  bad[8] = 2;
  const uint32_t crc = crc32c(bad.data(), kSnapshotHeaderBytes - 4);
  std::memcpy(bad.data() + kSnapshotHeaderBytes - 4, &crc, 4);
  spill(path_, bad);
  EXPECT_NE(open_error().find("version 2, this build reads version 1"), std::string::npos)
      << open_error();
  spill(path_, std::vector<uint8_t>(200, 'x'));
  EXPECT_NE(open_error().find("not a shoal snapshot"), std::string::npos) << open_error();
}

TEST(SnapshotFormat, OutOfRangeHeaderFieldsAreNamed) {
  auto error_for = [](auto mutate) {
    SnapshotHeader h;
    h.ram_bytes = 1 << 30;
    h.vcpus = 1;
    h.state_offset = 96;
    h.state_bytes = 10;
    h.index_offset = 106;
    h.index_bytes = 12;
    mutate(h);
    const std::vector<uint8_t> b = encode_snapshot_header(h);
    auto r = decode_snapshot_header(b.data(), b.size(), 118);
    return r.ok() ? std::string("ok") : r.error().message();
  };
  EXPECT_EQ(error_for([](SnapshotHeader&) {}), "ok");
  EXPECT_NE(error_for([](SnapshotHeader& h) { h.ram_bytes = 8ull << 40; }).find("ram_bytes"),
            std::string::npos);
  EXPECT_NE(error_for([](SnapshotHeader& h) { h.vcpus = 255; }).find("vcpus: 255"),
            std::string::npos);
  EXPECT_NE(error_for([](SnapshotHeader& h) { h.block_bytes = 12288; }).find("block_bytes"),
            std::string::npos);
  EXPECT_NE(error_for([](SnapshotHeader& h) { h.working_set_pages = 1; }).find("working_set_pages"),
            std::string::npos);
  EXPECT_NE(error_for([](SnapshotHeader& h) { h.state_bytes = 33ull << 20; }).find("state"),
            std::string::npos);
  EXPECT_NE(error_for([](SnapshotHeader& h) { h.index_offset = 110; }).find("index"),
            std::string::npos);
}

TEST(SnapshotFormat, IndexChecksCatchOverlapsSharedSlotsAndStrayBlocks) {
  SnapshotHeader h;
  h.ram_bytes = 1 << 20;  // 256 pages
  h.vcpus = 1;
  h.block_bytes = 8192;  // 2 pages a block
  h.stored_pages = 4;
  h.state_offset = 10000;
  auto check = [&](SnapshotIndex idx) {
    auto r = decode_snapshot_index(encode_snapshot_index(idx), h);
    if (!r.ok()) return r.error().message();
    // What decodes is what was encoded, the block offsets following from the sizes.
    EXPECT_EQ(r->extents.size(), idx.extents.size());
    for (size_t i = 0; i < idx.extents.size() && i < r->extents.size(); ++i) {
      EXPECT_EQ(r->extents[i].first_page, idx.extents[i].first_page);
      EXPECT_EQ(r->extents[i].pages, idx.extents[i].pages);
      EXPECT_EQ(r->extents[i].first_slot, idx.extents[i].first_slot);
    }
    for (size_t i = 0; i < idx.blocks.size() && i < r->blocks.size(); ++i) {
      EXPECT_EQ(r->blocks[i].offset, idx.blocks[i].offset);
      EXPECT_EQ(r->blocks[i].crc, idx.blocks[i].crc);
    }
    return std::string("ok");
  };
  SnapshotIndex good;
  good.extents = {
      {0, 2, 2, PageClass::kStored}, {5, 1, 0, PageClass::kZero}, {10, 2, 0, PageClass::kStored}};
  good.blocks = {{96, 100, 0x12345678, BlockCodec::kLz4}, {196, 8192, 0, BlockCodec::kRaw}};
  EXPECT_EQ(check(good), "ok");
  SnapshotIndex bad = good;
  bad.extents[1].first_page = 1;  // overlaps: packed, a gap that wraps past the guest's end
  EXPECT_NE(check(bad).find("extent 1: starts 18446744073709551615 pages after page 2"),
            std::string::npos)
      << check(bad);
  bad = good;
  bad.extents[2].first_slot = 1;
  EXPECT_NE(check(bad).find("used by two extents"), std::string::npos) << check(bad);
  bad = good;
  bad.extents[2].first_page = 255;
  EXPECT_NE(check(bad).find("the guest has 256"), std::string::npos) << check(bad);
  h.state_offset = 5000;  // block 1 would run into it
  EXPECT_NE(check(good).find("block 1: 8192 bytes at 196 run into the state"), std::string::npos)
      << check(good);
  h.state_offset = 10000;
  bad = good;
  bad.blocks[0].stored_bytes = 9000;
  EXPECT_NE(check(bad).find("lz4, 9000 bytes"), std::string::npos) << check(bad);
  bad = good;
  bad.blocks.pop_back();
  EXPECT_NE(check(bad).find("1 blocks, 4 stored pages need 2"), std::string::npos) << check(bad);
  bad = good;
  bad.extents[0].kind = static_cast<PageClass>(7);
  EXPECT_NE(check(bad).find("class 7"), std::string::npos) << check(bad);
}

TEST(SnapshotFormat, CountsAreBoundedBeforeAnythingIsAllocated) {
  // A tiny index claiming a billion blocks of a 4 TiB guest: refused from the sizes alone.
  SnapshotHeader h;
  h.ram_bytes = 4ull << 40;
  h.vcpus = 1;
  h.block_bytes = 4096;
  h.stored_pages = 1ull << 30;
  h.state_offset = 200;
  std::vector<uint8_t> index(20, 0);
  const uint32_t counts[3] = {1, 1u << 30, 100};
  std::memcpy(index.data(), counts, sizeof counts);
  auto r = decode_snapshot_index(index, h);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("1073741824 blocks cannot fit before the state at 200"),
            std::string::npos)
      << r.error().message();
  // A packed size no compressed index of this length can expand to.
  h.stored_pages = 1;
  const uint32_t inflated[3] = {1, 1, 1u << 30};
  std::memcpy(index.data(), inflated, sizeof inflated);
  r = decode_snapshot_index(index, h);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("packed size 1073741824 does not fit"), std::string::npos)
      << r.error().message();
}

}  // namespace
}  // namespace shoal

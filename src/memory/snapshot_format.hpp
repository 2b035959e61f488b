// The snapshot file: what one host saves of a paused guest, read back by a lazy restore.
// Little-endian, version 1:
//
//   header (96 bytes, its own CRC)
//   blocks     the non-zero pages, in slot order: the working set first, then the rest in
//              guest-page order; block i holds slots [i*P, (i+1)*P), P = block_bytes / 4 KiB,
//              each block lz4-compressed (or raw where that is smaller), with a CRC-32C
//   state      the machine's state (vCPUs, in-kernel devices, port devices), opaque here
//   index      extents of guest pages: a zero page (a content class: never stored) or a run of
//              stored pages with consecutive slots; a page in no extent is dormant. Then the
//              block table (stored size, codec, CRC; the blocks lie back to back). Packed as
//              varint deltas and lz4-compressed, so that even a guest whose zero and data pages
//              alternate page by page pays a few bytes per thousand pages for it.
//
// Dormant and zero pages cost no bytes beyond their extents. Every field is range-checked when
// read; errors name the field ("snapshot index: extent 3: pages 12..20 overlap extent 2").
// Fuzzed by tests/fuzz/snapshot_file_fuzz.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shoal/status.hpp"

namespace shoal {

inline constexpr uint32_t kSnapshotVersion = 1;
inline constexpr size_t kSnapshotHeaderBytes = 96;
inline constexpr uint64_t kSnapshotPageBytes = 4096;
inline constexpr uint64_t kMaxSnapshotRamBytes = 4ull << 40;  // 4 TiB
inline constexpr uint32_t kMaxSnapshotVcpus = 254;
inline constexpr uint32_t kMinSnapshotBlockBytes = 4096;
inline constexpr uint32_t kMaxSnapshotBlockBytes = 4u << 20;
inline constexpr uint32_t kDefaultSnapshotBlockBytes = 256u << 10;
inline constexpr uint64_t kMaxSnapshotStateBytes = 32ull << 20;
inline constexpr uint64_t kMaxSnapshotExtents = 16ull << 20;

struct SnapshotHeader {
  uint64_t ram_bytes = 0;
  uint32_t vcpus = 0;
  uint32_t block_bytes = kDefaultSnapshotBlockBytes;
  uint64_t state_offset = 0;
  uint64_t state_bytes = 0;
  uint32_t state_crc = 0;
  uint32_t index_crc = 0;
  uint64_t index_offset = 0;
  uint64_t index_bytes = 0;
  uint64_t stored_pages = 0;       // non-zero pages kept in blocks
  uint64_t working_set_pages = 0;  // the first this many slots: what to load first

  uint64_t pages_per_block() const { return block_bytes / kSnapshotPageBytes; }
  uint64_t block_count() const {
    return (stored_pages + pages_per_block() - 1) / pages_per_block();
  }
};

enum class PageClass : uint8_t {
  kZero = 1,    // present and all zero when saved: served from the zero pool
  kStored = 2,  // its bytes are in a block
};

// 32-bit page numbers and slots reach 16 TiB, past kMaxSnapshotRamBytes; 16 bytes an extent
// keeps the index of a guest with a million extents at 16 MiB in memory.
struct PageExtent {
  uint32_t first_page = 0;
  uint32_t pages = 0;
  uint32_t first_slot = 0;  // kStored: slot of first_page; the next pages follow it
  PageClass kind = PageClass::kZero;
};
static_assert(kMaxSnapshotRamBytes / kSnapshotPageBytes <= UINT32_MAX);

enum class BlockCodec : uint32_t { kRaw = 0, kLz4 = 1 };

struct BlockEntry {
  uint64_t offset = 0;        // in the file
  uint32_t stored_bytes = 0;  // as written (compressed, or raw)
  uint32_t crc = 0;           // CRC-32C of the stored bytes
  BlockCodec codec = BlockCodec::kLz4;
};

struct SnapshotIndex {
  std::vector<PageExtent> extents;  // sorted by first_page, disjoint
  std::vector<BlockEntry> blocks;
};

std::vector<uint8_t> encode_snapshot_header(const SnapshotHeader& h);
// Checks the magic, version, CRC and every field against the limits and `file_bytes`.
Result<SnapshotHeader> decode_snapshot_header(const uint8_t* bytes, size_t size,
                                              uint64_t file_bytes);

std::vector<uint8_t> encode_snapshot_index(const SnapshotIndex& index);
// Checks the index against its header: extents inside guest RAM, sorted and disjoint, the
// stored extents' slots covering [0, stored_pages) exactly once, one block per P slots,
// back to back from the header up to the state, each no larger than its codec allows.
Result<SnapshotIndex> decode_snapshot_index(const std::vector<uint8_t>& bytes,
                                            const SnapshotHeader& header);

// The most the index of `extents` extents and `blocks` blocks can take in the file.
uint64_t max_snapshot_index_bytes(uint64_t extents, uint64_t blocks);

// The most a block of `raw_bytes` can take lz4-compressed (LZ4_COMPRESSBOUND).
inline uint64_t lz4_bound(uint64_t raw_bytes) {
  return raw_bytes + raw_bytes / 255 + 16;
}

}  // namespace shoal

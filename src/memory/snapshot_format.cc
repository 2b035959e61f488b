#include "memory/snapshot_format.hpp"

#include <lz4.h>

#include <algorithm>
#include <cstring>

#include "shoal/crc32c.hpp"
#include "shoal/size.hpp"
#include "shoal/wire_bytes.hpp"

namespace shoal {

namespace {

constexpr char kMagic[8] = {'S', 'H', 'O', 'A', 'L', 'S', 'N', 'P'};
constexpr size_t kHeaderCrcAt = kSnapshotHeaderBytes - 4;

Error header_error(const std::string& what) {
  return Error("snapshot header: " + what);
}

Error index_error(const std::string& what) {
  return Error("snapshot index: " + what);
}

std::string range(uint64_t first, uint64_t count) {
  return std::to_string(first) + ".." + std::to_string(first + count);
}

// [offset, offset + bytes) lies inside [start, end).
bool inside(uint64_t offset, uint64_t bytes, uint64_t start, uint64_t end) {
  return offset >= start && offset <= end && bytes <= end - offset;
}

}  // namespace

std::vector<uint8_t> encode_snapshot_header(const SnapshotHeader& h) {
  WireWriter w;
  w.put_bytes(kMagic, sizeof kMagic);
  w.put(kSnapshotVersion).put(static_cast<uint32_t>(kSnapshotHeaderBytes));
  w.put(h.ram_bytes).put(h.vcpus).put(h.block_bytes);
  w.put(h.state_offset).put(h.state_bytes).put(h.state_crc).put(h.index_crc);
  w.put(h.index_offset).put(h.index_bytes).put(h.stored_pages).put(h.working_set_pages);
  w.put(uint32_t{0});  // flags: none defined in version 1
  std::vector<uint8_t> b = w.take();
  const uint32_t crc = crc32c(b.data(), b.size());
  b.resize(kSnapshotHeaderBytes);
  std::memcpy(b.data() + kHeaderCrcAt, &crc, 4);
  return b;
}

Result<SnapshotHeader> decode_snapshot_header(const uint8_t* bytes, size_t size,
                                              uint64_t file_bytes) {
  if (size < kSnapshotHeaderBytes || file_bytes < kSnapshotHeaderBytes)
    return header_error("truncated: " + std::to_string(std::min<uint64_t>(size, file_bytes)) +
                        " bytes, a header takes " + std::to_string(kSnapshotHeaderBytes));
  if (std::memcmp(bytes, kMagic, sizeof kMagic) != 0)
    return header_error("not a shoal snapshot (bad magic)");
  std::vector<uint8_t> b(bytes, bytes + kSnapshotHeaderBytes);
  WireReader r(b);
  char magic[8];
  uint32_t version = 0, header_bytes = 0, flags = 0, crc = 0;
  SnapshotHeader h;
  r.get_bytes(magic, sizeof magic);
  r.get(version);
  if (version != kSnapshotVersion)
    return header_error("version " + std::to_string(version) + ", this build reads version " +
                        std::to_string(kSnapshotVersion));
  r.get(header_bytes);
  r.get(h.ram_bytes);
  r.get(h.vcpus);
  r.get(h.block_bytes);
  r.get(h.state_offset);
  r.get(h.state_bytes);
  r.get(h.state_crc);
  r.get(h.index_crc);
  r.get(h.index_offset);
  r.get(h.index_bytes);
  r.get(h.stored_pages);
  r.get(h.working_set_pages);
  r.get(flags);
  r.get(crc);
  if (crc != crc32c(b.data(), kHeaderCrcAt)) return header_error("CRC mismatch (corrupted)");
  if (header_bytes != kSnapshotHeaderBytes)
    return header_error("header_bytes: " + std::to_string(header_bytes) + ", expected " +
                        std::to_string(kSnapshotHeaderBytes));
  if (flags != 0) return header_error("flags: " + format_hex(flags) + ", none are defined");
  if (h.ram_bytes == 0 || h.ram_bytes % kSnapshotPageBytes != 0 ||
      h.ram_bytes > kMaxSnapshotRamBytes)
    return header_error("ram_bytes: " + std::to_string(h.ram_bytes) +
                        ", expected a multiple of 4 KiB up to " +
                        format_size(kMaxSnapshotRamBytes));
  if (h.vcpus == 0 || h.vcpus > kMaxSnapshotVcpus)
    return header_error("vcpus: " + std::to_string(h.vcpus) + ", expected 1.." +
                        std::to_string(kMaxSnapshotVcpus));
  if (h.block_bytes < kMinSnapshotBlockBytes || h.block_bytes > kMaxSnapshotBlockBytes ||
      (h.block_bytes & (h.block_bytes - 1)) != 0)
    return header_error("block_bytes: " + std::to_string(h.block_bytes) +
                        ", expected a power of two from 4 KiB to 4 MiB");
  const uint64_t ram_pages = h.ram_bytes / kSnapshotPageBytes;
  if (h.stored_pages > ram_pages)
    return header_error("stored_pages: " + std::to_string(h.stored_pages) + ", the guest has " +
                        std::to_string(ram_pages));
  if (h.working_set_pages > h.stored_pages)
    return header_error("working_set_pages: " + std::to_string(h.working_set_pages) +
                        ", more than the " + std::to_string(h.stored_pages) + " stored");
  if (h.state_bytes > kMaxSnapshotStateBytes ||
      !inside(h.state_offset, h.state_bytes, kSnapshotHeaderBytes, file_bytes))
    return header_error("state: " + std::to_string(h.state_bytes) + " bytes at " +
                        std::to_string(h.state_offset) + ", outside the file's " +
                        std::to_string(file_bytes) + " bytes (or over " +
                        format_size(kMaxSnapshotStateBytes) + ")");
  const uint64_t max_index =
      max_snapshot_index_bytes(kMaxSnapshotExtents, ram_pages / h.pages_per_block() + 1);
  if (h.index_bytes < 12 || h.index_bytes > max_index ||
      !inside(h.index_offset, h.index_bytes, kSnapshotHeaderBytes, file_bytes))
    return header_error("index: " + std::to_string(h.index_bytes) + " bytes at " +
                        std::to_string(h.index_offset) + ", outside the file's " +
                        std::to_string(file_bytes) + " bytes (or too large)");
  return h;
}

namespace {

// The index's packed form: unsigned LEB128 varints, and zigzag for signed deltas.
void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

class PackedReader {
 public:
  explicit PackedReader(const std::vector<uint8_t>& b) : b_(b) {}
  bool varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= b_.size()) return false;
      const uint8_t byte = b_[pos_++];
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return shift < 63 || byte <= 1;
    }
    return false;
  }
  bool byte(uint8_t& v) {
    if (pos_ >= b_.size()) return false;
    v = b_[pos_++];
    return true;
  }
  bool u32(uint32_t& v) {
    if (b_.size() - pos_ < 4) return false;
    std::memcpy(&v, b_.data() + pos_, 4);
    pos_ += 4;
    return true;
  }
  bool done() const { return pos_ == b_.size(); }

 private:
  const std::vector<uint8_t>& b_;
  size_t pos_ = 0;
};

uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t unzigzag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

// The most an extent (gap, pages, class, slot delta) and a block (size, codec, CRC) take packed.
constexpr uint64_t kMaxPackedExtent = 10 + 5 + 1 + 10;
constexpr uint64_t kMaxPackedBlock = 5 + 1 + 4;

}  // namespace

uint64_t max_snapshot_index_bytes(uint64_t extents, uint64_t blocks) {
  return 12 + lz4_bound(extents * kMaxPackedExtent + blocks * kMaxPackedBlock);
}

// Extents as deltas: the gap since the previous extent's end, its pages, its class and, for a
// stored extent, how its first slot differs from the slot after the previous stored extent
// (0 in a snapshot without a working set). Blocks: stored size, codec, CRC; their offsets
// follow from the sizes (the blocks lie back to back after the header). Then lz4 over it all:
// the alternating zero and data pages of a typical guest make runs of identical records.
std::vector<uint8_t> encode_snapshot_index(const SnapshotIndex& index) {
  std::vector<uint8_t> packed;
  uint64_t prev_end = 0, next_slot = 0;
  for (const PageExtent& e : index.extents) {
    put_varint(packed, e.first_page - prev_end);
    put_varint(packed, e.pages);
    packed.push_back(static_cast<uint8_t>(e.kind));
    if (e.kind == PageClass::kStored) {
      put_varint(packed, zigzag(static_cast<int64_t>(e.first_slot - next_slot)));
      next_slot = e.first_slot + e.pages;
    }
    prev_end = e.first_page + e.pages;
  }
  for (const BlockEntry& b : index.blocks) {
    put_varint(packed, b.stored_bytes);
    packed.push_back(static_cast<uint8_t>(b.codec));
    const uint8_t* crc = reinterpret_cast<const uint8_t*>(&b.crc);
    packed.insert(packed.end(), crc, crc + 4);
  }
  std::vector<uint8_t> out(12 + lz4_bound(packed.size()));
  const uint32_t counts[3] = {static_cast<uint32_t>(index.extents.size()),
                              static_cast<uint32_t>(index.blocks.size()),
                              static_cast<uint32_t>(packed.size())};
  std::memcpy(out.data(), counts, 12);
  const int n = LZ4_compress_default(
      reinterpret_cast<const char*>(packed.data()), reinterpret_cast<char*>(out.data() + 12),
      static_cast<int>(packed.size()), static_cast<int>(out.size() - 12));
  out.resize(12 + static_cast<size_t>(std::max(n, 0)));
  return out;
}

Result<SnapshotIndex> decode_snapshot_index(const std::vector<uint8_t>& bytes,
                                            const SnapshotHeader& h) {
  uint32_t extents = 0, blocks = 0, packed_bytes = 0;
  {
    WireReader r(bytes);
    if (!r.get(extents) || !r.get(blocks) || !r.get(packed_bytes)) return index_error("truncated");
  }
  if (extents > kMaxSnapshotExtents)
    return index_error(std::to_string(extents) + " extents, at most " +
                       std::to_string(kMaxSnapshotExtents));
  if (blocks != h.block_count())
    return index_error(std::to_string(blocks) + " blocks, " + std::to_string(h.stored_pages) +
                       " stored pages need " + std::to_string(h.block_count()));
  // Bounds before anything is allocated from these counts: a block takes at least a byte of
  // the file before the state, a packed extent at least 3 bytes and a block entry 6, and lz4
  // expands at most ~255-fold.
  if (blocks > h.state_offset - kSnapshotHeaderBytes)
    return index_error(std::to_string(blocks) + " blocks cannot fit before the state at " +
                       std::to_string(h.state_offset));
  if (packed_bytes < 3 * uint64_t{extents} + 6 * uint64_t{blocks} ||
      packed_bytes > 255 * (bytes.size() - 12) + 16)
    return index_error("packed size " + std::to_string(packed_bytes) + " does not fit " +
                       std::to_string(extents) + " extents, " + std::to_string(blocks) +
                       " blocks and " + std::to_string(bytes.size() - 12) + " compressed bytes");
  if (packed_bytes > uint64_t{extents} * kMaxPackedExtent + uint64_t{blocks} * kMaxPackedBlock)
    return index_error("packed size " + std::to_string(packed_bytes) + " is more than " +
                       std::to_string(extents) + " extents and " + std::to_string(blocks) +
                       " blocks can take");
  std::vector<uint8_t> packed(packed_bytes);
  const int n = LZ4_decompress_safe(
      reinterpret_cast<const char*>(bytes.data() + 12), reinterpret_cast<char*>(packed.data()),
      static_cast<int>(bytes.size() - 12), static_cast<int>(packed.size()));
  if (n != static_cast<int>(packed_bytes))
    return index_error("lz4 data does not decompress to " + std::to_string(packed_bytes) +
                       " bytes");
  PackedReader r(packed);
  const uint64_t ram_pages = h.ram_bytes / kSnapshotPageBytes;
  SnapshotIndex index;
  index.extents.resize(extents);
  uint64_t prev_end = 0, next_slot = 0, stored = 0;
  for (uint32_t i = 0; i < extents; ++i) {
    PageExtent& e = index.extents[i];
    // Built only for an error: one string per extent would cost more than the decode.
    auto at = [i] { return "extent " + std::to_string(i) + ": "; };
    uint64_t gap = 0, pages = 0, slot_delta = 0;
    uint8_t kind = 0;
    if (!r.varint(gap) || !r.varint(pages) || !r.byte(kind)) return index_error(at() + "truncated");
    if (kind != static_cast<uint8_t>(PageClass::kZero) &&
        kind != static_cast<uint8_t>(PageClass::kStored))
      return index_error(at() + "class " + std::to_string(kind) +
                         ", expected 1 (zero) or 2 (stored)");
    e.kind = static_cast<PageClass>(kind);
    // Deltas cannot overlap or go backwards; they can only run past the guest's end.
    if (gap >= ram_pages - prev_end)
      return index_error(at() + "starts " + std::to_string(gap) + " pages after page " +
                         std::to_string(prev_end) + ", the guest has " + std::to_string(ram_pages));
    if (pages == 0 || pages > UINT32_MAX || pages > ram_pages - (prev_end + gap))
      return index_error(at() + "pages " + range(prev_end + gap, pages) + ", the guest has " +
                         std::to_string(ram_pages));
    e.first_page = static_cast<uint32_t>(prev_end + gap);
    e.pages = static_cast<uint32_t>(pages);
    prev_end = e.first_page + uint64_t{e.pages};
    if (e.kind == PageClass::kStored) {
      if (!r.varint(slot_delta)) return index_error(at() + "truncated");
      const uint64_t first_slot = next_slot + static_cast<uint64_t>(unzigzag(slot_delta));
      if (first_slot >= h.stored_pages || e.pages > h.stored_pages - first_slot)
        return index_error(at() + "slots " + range(first_slot, e.pages) + ", only " +
                           std::to_string(h.stored_pages) + " pages are stored");
      e.first_slot = static_cast<uint32_t>(first_slot);
      next_slot = first_slot + e.pages;
      stored += e.pages;
    }
  }
  if (stored != h.stored_pages)
    return index_error("stored extents hold " + std::to_string(stored) +
                       " pages, the header says " + std::to_string(h.stored_pages));
  // Disjoint slot ranges whose sizes add up to stored_pages cover every slot exactly once.
  // Without a working set the slots follow the pages: checked in place, no sorted copy.
  bool in_page_order = true;
  uint64_t slot_end = 0;
  for (const PageExtent& e : index.extents) {
    if (e.kind != PageClass::kStored) continue;
    in_page_order = in_page_order && e.first_slot == slot_end;
    slot_end = e.first_slot + e.pages;
  }
  if (!in_page_order) {
    std::vector<std::pair<uint64_t, uint64_t>> slots;
    for (const PageExtent& e : index.extents)
      if (e.kind == PageClass::kStored) slots.emplace_back(e.first_slot, e.pages);
    std::sort(slots.begin(), slots.end());
    for (size_t i = 1; i < slots.size(); ++i)
      if (slots[i].first < slots[i - 1].first + slots[i - 1].second)
        return index_error("slots " + range(slots[i].first, slots[i].second) +
                           " are used by two extents");
  }
  index.blocks.resize(blocks);
  uint64_t offset = kSnapshotHeaderBytes;
  for (uint32_t i = 0; i < blocks; ++i) {
    BlockEntry& b = index.blocks[i];
    auto at = [i] { return "block " + std::to_string(i) + ": "; };
    uint64_t size = 0;
    uint8_t codec = 0;
    if (!r.varint(size) || !r.byte(codec) || !r.u32(b.crc)) return index_error(at() + "truncated");
    const uint64_t pages =
        std::min<uint64_t>(h.pages_per_block(), h.stored_pages - uint64_t{i} * h.pages_per_block());
    const uint64_t raw = pages * kSnapshotPageBytes;
    if (codec == static_cast<uint8_t>(BlockCodec::kRaw)) {
      if (size != raw)
        return index_error(at() + "raw, " + std::to_string(size) + " bytes for " +
                           std::to_string(raw));
    } else if (codec == static_cast<uint8_t>(BlockCodec::kLz4)) {
      if (size == 0 || size > lz4_bound(raw))
        return index_error(at() + "lz4, " + std::to_string(size) + " bytes for " +
                           std::to_string(raw) + " (at most " + std::to_string(lz4_bound(raw)) +
                           ")");
    } else {
      return index_error(at() + "codec " + std::to_string(codec) + ", expected 0 (raw) or 1 (lz4)");
    }
    b.codec = static_cast<BlockCodec>(codec);
    b.stored_bytes = static_cast<uint32_t>(size);
    b.offset = offset;
    if (!inside(b.offset, b.stored_bytes, kSnapshotHeaderBytes, h.state_offset))
      return index_error(at() + std::to_string(b.stored_bytes) + " bytes at " +
                         std::to_string(b.offset) + " run into the state (at " +
                         std::to_string(h.state_offset) + ")");
    offset += b.stored_bytes;
  }
  if (!r.done()) return index_error("trailing bytes");
  return index;
}

}  // namespace shoal

#include "memory/snapshot_format.hpp"

#include <algorithm>
#include <cstring>

#include "shoal/crc32c.hpp"
#include "shoal/size.hpp"
#include "shoal/wire_bytes.hpp"

namespace shoal {

namespace {

constexpr char kMagic[8] = {'S', 'H', 'O', 'A', 'L', 'S', 'N', 'P'};
constexpr size_t kHeaderCrcAt = kSnapshotHeaderBytes - 4;
constexpr size_t kExtentBytes = 24;
constexpr size_t kBlockEntryBytes = 24;

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
      8 + kMaxSnapshotExtents * kExtentBytes +
      (ram_pages / (h.block_bytes / kSnapshotPageBytes) + 1) * kBlockEntryBytes;
  if (h.index_bytes < 8 || h.index_bytes > max_index ||
      !inside(h.index_offset, h.index_bytes, kSnapshotHeaderBytes, file_bytes))
    return header_error("index: " + std::to_string(h.index_bytes) + " bytes at " +
                        std::to_string(h.index_offset) + ", outside the file's " +
                        std::to_string(file_bytes) + " bytes (or too large)");
  return h;
}

std::vector<uint8_t> encode_snapshot_index(const SnapshotIndex& index) {
  WireWriter w;
  w.put(static_cast<uint32_t>(index.extents.size()))
      .put(static_cast<uint32_t>(index.blocks.size()));
  for (const PageExtent& e : index.extents) {
    w.put(e.first_page).put(e.pages).put(static_cast<uint8_t>(e.kind));
    w.put(uint8_t{0}).put(uint16_t{0}).put(e.first_slot);
  }
  for (const BlockEntry& b : index.blocks)
    w.put(b.offset)
        .put(b.stored_bytes)
        .put(b.crc)
        .put(static_cast<uint32_t>(b.codec))
        .put(uint32_t{0});
  return w.take();
}

Result<SnapshotIndex> decode_snapshot_index(const std::vector<uint8_t>& bytes,
                                            const SnapshotHeader& h) {
  WireReader r(bytes);
  uint32_t extents = 0, blocks = 0;
  if (!r.get(extents) || !r.get(blocks)) return index_error("truncated");
  if (extents > kMaxSnapshotExtents)
    return index_error(std::to_string(extents) + " extents, at most " +
                       std::to_string(kMaxSnapshotExtents));
  if (blocks != h.block_count())
    return index_error(std::to_string(blocks) + " blocks, " + std::to_string(h.stored_pages) +
                       " stored pages need " + std::to_string(h.block_count()));
  const uint64_t expected =
      8 + uint64_t{extents} * kExtentBytes + uint64_t{blocks} * kBlockEntryBytes;
  if (bytes.size() != expected)
    return index_error(std::to_string(bytes.size()) + " bytes, " + std::to_string(extents) +
                       " extents and " + std::to_string(blocks) + " blocks take " +
                       std::to_string(expected));
  const uint64_t ram_pages = h.ram_bytes / kSnapshotPageBytes;
  SnapshotIndex index;
  index.extents.resize(extents);
  uint64_t next_page = 0, stored = 0;
  for (uint32_t i = 0; i < extents; ++i) {
    PageExtent& e = index.extents[i];
    uint8_t kind = 0, pad8 = 0;
    uint16_t pad16 = 0;
    r.get(e.first_page);
    r.get(e.pages);
    r.get(kind);
    r.get(pad8);
    r.get(pad16);
    r.get(e.first_slot);
    const std::string at = "extent " + std::to_string(i) + ": ";
    if (kind != static_cast<uint8_t>(PageClass::kZero) &&
        kind != static_cast<uint8_t>(PageClass::kStored))
      return index_error(at + "class " + std::to_string(kind) +
                         ", expected 1 (zero) or 2 (stored)");
    e.kind = static_cast<PageClass>(kind);
    if (e.pages == 0 || e.first_page >= ram_pages || e.pages > ram_pages - e.first_page)
      return index_error(at + "pages " + range(e.first_page, e.pages) + ", the guest has " +
                         std::to_string(ram_pages));
    if (e.first_page < next_page)
      return index_error(at + "pages " + range(e.first_page, e.pages) +
                         " overlap or precede the extent before");
    next_page = e.first_page + e.pages;
    if (e.kind == PageClass::kStored) {
      if (e.first_slot >= h.stored_pages || e.pages > h.stored_pages - e.first_slot)
        return index_error(at + "slots " + range(e.first_slot, e.pages) + ", only " +
                           std::to_string(h.stored_pages) + " pages are stored");
      stored += e.pages;
    } else if (e.first_slot != 0) {
      return index_error(at + "a zero extent with slot " + std::to_string(e.first_slot));
    }
  }
  if (stored != h.stored_pages)
    return index_error("stored extents hold " + std::to_string(stored) +
                       " pages, the header says " + std::to_string(h.stored_pages));
  // Disjoint slot ranges whose sizes add up to stored_pages cover every slot exactly once.
  std::vector<std::pair<uint64_t, uint64_t>> slots;
  for (const PageExtent& e : index.extents)
    if (e.kind == PageClass::kStored) slots.emplace_back(e.first_slot, e.pages);
  std::sort(slots.begin(), slots.end());
  for (size_t i = 1; i < slots.size(); ++i)
    if (slots[i].first < slots[i - 1].first + slots[i - 1].second)
      return index_error("slots " + range(slots[i].first, slots[i].second) +
                         " are used by two extents");
  index.blocks.resize(blocks);
  uint64_t end_of_blocks = kSnapshotHeaderBytes;
  for (uint32_t i = 0; i < blocks; ++i) {
    BlockEntry& b = index.blocks[i];
    uint32_t codec = 0, reserved = 0;
    r.get(b.offset);
    r.get(b.stored_bytes);
    r.get(b.crc);
    r.get(codec);
    r.get(reserved);
    const std::string at = "block " + std::to_string(i) + ": ";
    const uint64_t pages =
        std::min<uint64_t>(h.pages_per_block(), h.stored_pages - uint64_t{i} * h.pages_per_block());
    const uint64_t raw = pages * kSnapshotPageBytes;
    if (codec == static_cast<uint32_t>(BlockCodec::kRaw)) {
      if (b.stored_bytes != raw)
        return index_error(at + "raw, " + std::to_string(b.stored_bytes) + " bytes for " +
                           std::to_string(raw));
    } else if (codec == static_cast<uint32_t>(BlockCodec::kLz4)) {
      if (b.stored_bytes == 0 || b.stored_bytes > lz4_bound(raw))
        return index_error(at + "lz4, " + std::to_string(b.stored_bytes) + " bytes for " +
                           std::to_string(raw) + " (at most " + std::to_string(lz4_bound(raw)) +
                           ")");
    } else {
      return index_error(at + "codec " + std::to_string(codec) + ", expected 0 (raw) or 1 (lz4)");
    }
    if (reserved != 0) return index_error(at + "reserved field is " + std::to_string(reserved));
    b.codec = static_cast<BlockCodec>(codec);
    // Blocks lie in file order between the header and the state.
    if (b.offset < end_of_blocks ||
        !inside(b.offset, b.stored_bytes, end_of_blocks, h.state_offset))
      return index_error(at + std::to_string(b.stored_bytes) + " bytes at " +
                         std::to_string(b.offset) + ", not between the previous block (ends at " +
                         std::to_string(end_of_blocks) + ") and the state (at " +
                         std::to_string(h.state_offset) + ")");
    end_of_blocks = b.offset + b.stored_bytes;
  }
  return index;
}

}  // namespace shoal

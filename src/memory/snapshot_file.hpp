// An open snapshot file (memory/snapshot_format.hpp has the layout), checked whole before a
// restore starts: header, index and state CRCs and every field. Blocks are checked (CRC,
// decompressed size) as they are read. Read-only after open(): the fault thread and the
// background loader share one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "memory/snapshot_format.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class SnapshotFile {
 public:
  static Result<std::unique_ptr<SnapshotFile>> open(const std::string& path);

  const std::string& path() const { return path_; }
  const SnapshotHeader& header() const { return header_; }
  const SnapshotIndex& index() const { return index_; }
  const std::vector<uint8_t>& state() const { return state_; }
  uint64_t file_bytes() const { return file_bytes_; }
  uint64_t blocks() const { return index_.blocks.size(); }

  // The slot of `page` if it is stored in a block (binary search over the extents).
  std::optional<uint64_t> slot_of(uint64_t page) const;
  uint64_t block_of_slot(uint64_t slot) const { return slot / header_.pages_per_block(); }
  // Pages in block `b` (the last may be short).
  uint64_t block_pages(uint64_t b) const;
  // The runs of consecutive guest pages block `b` holds: (first guest page, first page's
  // offset in the block in pages, pages).
  void for_each_run(uint64_t b,
                    const std::function<void(uint64_t page, uint64_t at, uint64_t count)>& f) const;

  // Reads block `b` and decompresses it into `out` (block_pages(b) * 4 KiB), checking its CRC
  // and size. `scratch` holds the compressed bytes between calls (no allocation once grown).
  Status read_block(uint64_t b, std::span<uint8_t> out, std::vector<uint8_t>& scratch) const;
  // The second half of read_block, for bytes read some other way (memory/block_reader.hpp):
  // checks the CRC of block `b`'s stored bytes and decompresses them into `out`.
  Status decode_block(uint64_t b, std::span<const uint8_t> stored, std::span<uint8_t> out) const;

  // The file opened for reading (buffered).
  int fd() const { return fd_.get(); }

 private:
  SnapshotFile() = default;

  std::string path_;
  UniqueFd fd_;
  uint64_t file_bytes_ = 0;
  SnapshotHeader header_;
  SnapshotIndex index_;
  std::vector<uint8_t> state_;
  std::vector<uint32_t> stored_by_slot_;  // indexes of the stored extents, by first_slot
};

}  // namespace shoal

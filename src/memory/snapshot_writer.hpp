// Writes a snapshot file (memory/snapshot_format.hpp) of a paused guest's RAM and state.
// Which pages exist comes from the page directory (dormant pages are not in the file); each
// mapped page is read once, all-zero pages become zero extents, and the rest are stored in
// lz4-compressed blocks, the working set's pages first. The file is written beside `path`,
// synced and renamed over it, so a crash mid-write leaves no half a snapshot under that name.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "memory/page_directory.hpp"
#include "memory/snapshot_format.hpp"
#include "shoal/status.hpp"

namespace shoal {

struct SnapshotInput {
  const uint8_t* ram = nullptr;  // guest RAM mapping: nothing may write it meanwhile
  uint64_t ram_bytes = 0;
  const PageDirectory* directory = nullptr;  // which pages are mapped
  // Instead of the directory: exactly these pages, each read from `ram` (zero ones become zero
  // extents). A replica's journal: the pages dirtied in one interval.
  const std::vector<uint64_t>* pages = nullptr;
  // Where each page's bytes are, when not at `ram` (a pod member's home copies are elsewhere).
  std::function<const uint8_t*(uint64_t page)> page_at;
  uint32_t vcpus = 0;
  std::vector<uint8_t> state;         // the machine's state, opaque here
  std::vector<uint64_t> working_set;  // pages to store first (any order; dormant ones ignored)
  uint32_t block_bytes = kDefaultSnapshotBlockBytes;
};

struct SnapshotWriteStats {
  uint64_t file_bytes = 0;
  uint64_t mapped_pages = 0;
  uint64_t zero_pages = 0;
  uint64_t stored_pages = 0;
  uint64_t working_set_pages = 0;
  uint64_t compressed_bytes = 0;  // the blocks, as stored
  uint64_t scan_ns = 0;           // finding and classifying the pages
  uint64_t write_ns = 0;          // compressing and writing, sync included
};

Result<SnapshotWriteStats> write_snapshot(const std::string& path, const SnapshotInput& in);

// Renames `from` over `to` and syncs their directory, so the new name survives a crash.
Status rename_durably(const std::string& from, const std::string& to);

}  // namespace shoal

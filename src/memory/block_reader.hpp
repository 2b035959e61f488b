// Reads a snapshot file's stored blocks ahead of their use: up to `depth` reads in flight on one
// io_uring, so the disk works on the next blocks while the loader checks, decompresses and
// installs the last one. With `direct`, reads bypass the page cache (O_DIRECT): a cold
// snapshot then costs no second copy of guest memory in the cache and no copy out of it. Each
// read covers its block's bytes widened to 4 KiB boundaries (what O_DIRECT asks of offsets,
// lengths and buffers on the devices shoal meets), into a 4 KiB-aligned buffer of its slot.
//
// One thread uses each (the background loader's, or load_all's). The destructor waits for reads
// still in flight: the kernel writes into their buffers until they complete.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/io_ring.hpp"
#include "memory/snapshot_file.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class BlockReader {
 public:
  static constexpr unsigned kMaxDepth = 64;
  static Result<std::unique_ptr<BlockReader>> create(const SnapshotFile& file, unsigned depth,
                                                     bool direct);
  BlockReader(const BlockReader&) = delete;
  BlockReader& operator=(const BlockReader&) = delete;
  ~BlockReader();

  // False from the first O_DIRECT read the file system refused (EINVAL) on: then buffered.
  bool direct() const { return direct_; }
  unsigned in_flight() const { return in_flight_; }
  bool can_submit() const { return in_flight_ < slots_.size(); }
  // Starts reading block `b` into a free slot (can_submit() must be true).
  Status submit(uint64_t b);
  // Waits until one read is complete: its block and its stored bytes, valid until release(),
  // or why that block could not be read (`read`). An error of the ring itself is the result's.
  struct Done {
    uint64_t block = 0;
    Status read;
    std::span<const uint8_t> stored;
    unsigned slot = 0;
  };
  Result<Done> wait_one();
  void release(const Done& d);

 private:
  struct Slot {
    uint8_t* buffer = nullptr;  // 4 KiB-aligned, `capacity` bytes
    uint64_t block = 0;
    uint64_t start = 0;    // file offset of buffer[0] (4 KiB-aligned when direct)
    uint64_t want = 0;     // bytes from `start` that hold the whole block
    uint64_t have = 0;     // bytes read so far
    uint64_t skip = 0;     // where the block begins in the buffer
    bool busy = false;     // read in flight, or done and not yet released
    bool reading = false;  // a read of it is in the ring
    bool direct = false;   // read with O_DIRECT
    iovec iov{};
  };
  BlockReader(const SnapshotFile& file, IoRing ring, UniqueFd direct_fd, bool direct)
      : file_(file), ring_(std::move(ring)), direct_fd_(std::move(direct_fd)), direct_(direct) {}
  Status queue(unsigned slot);

  const SnapshotFile& file_;
  IoRing ring_;
  UniqueFd direct_fd_;  // the file opened with O_DIRECT, when asked for
  bool direct_;
  uint64_t capacity_ = 0;
  std::vector<Slot> slots_;
  unsigned in_flight_ = 0;  // slots busy
};

}  // namespace shoal

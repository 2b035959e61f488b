#include "memory/block_reader.hpp"

#include <fcntl.h>

#include <cstdlib>

#include "shoal/log.hpp"

namespace shoal {

namespace {

constexpr uint64_t kAlign = 4096;

}  // namespace

Result<std::unique_ptr<BlockReader>> BlockReader::create(const SnapshotFile& file, unsigned depth,
                                                         bool direct) {
  if (depth == 0 || depth > kMaxDepth)
    return Error("snapshot reader: depth " + std::to_string(depth) + " is not in 1.." +
                 std::to_string(kMaxDepth));
  // Its own descriptor: only a reader asked for O_DIRECT opens one (EINVAL where the file
  // system has no direct I/O, tmpfs before Linux 6.6 say).
  UniqueFd direct_fd;
  if (direct) {
    direct_fd = UniqueFd(::open(file.path().c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
    if (!direct_fd.valid())
      return errno_error("snapshot reader: " + file.path() + ": open with O_DIRECT");
  }
  auto ring = IoRing::create(depth);
  if (!ring) return ring.error().context("snapshot reader");
  std::unique_ptr<BlockReader> r(
      new BlockReader(file, std::move(*ring), std::move(direct_fd), direct));
  // The largest stored block (lz4 may grow one a little), widened by an alignment each side.
  r->capacity_ = (lz4_bound(file.header().block_bytes) + 3 * kAlign) / kAlign * kAlign;
  r->slots_.resize(depth);
  for (Slot& s : r->slots_) {
    s.buffer = static_cast<uint8_t*>(std::aligned_alloc(kAlign, r->capacity_));
    if (s.buffer == nullptr) return Error("snapshot reader: out of memory for its buffers");
  }
  return r;
}

BlockReader::~BlockReader() {
  // The kernel writes into a buffer until its read completes: wait for every one in the ring.
  for (bool any = true; any;) {
    any = false;
    for (const Slot& s : slots_) any = any || s.reading;
    uint64_t tag = 0;
    int result = 0;
    if (any && !ring_.wait(&tag, &result).ok()) {
      // Reads still in flight and no way to wait for them: their buffers are leaked, not
      // freed under the kernel's writes.
      for (Slot& s : slots_)
        if (!s.reading) std::free(s.buffer);
      return;
    }
    if (any && tag < slots_.size()) slots_[tag].reading = false;
  }
  for (Slot& s : slots_) std::free(s.buffer);
}

Status BlockReader::submit(uint64_t b) {
  if (b >= file_.blocks()) return Error("snapshot reader: no block " + std::to_string(b));
  unsigned i = 0;
  while (i < slots_.size() && slots_[i].busy) ++i;
  if (i == slots_.size()) return Error("snapshot reader: every slot is busy");
  Slot& s = slots_[i];
  const BlockEntry& e = file_.index().blocks[b];
  s.block = b;
  s.start = direct_ ? e.offset / kAlign * kAlign : e.offset;
  s.skip = e.offset - s.start;
  s.want = s.skip + e.stored_bytes;
  if (direct_) s.want = (s.want + kAlign - 1) / kAlign * kAlign;
  if (s.want > capacity_) return Error("snapshot block " + std::to_string(b) + ": too large");
  s.have = 0;
  s.direct = direct_;
  s.busy = true;
  ++in_flight_;
  return queue(i);
}

Status BlockReader::queue(unsigned slot) {
  Slot& s = slots_[slot];
  s.iov = {s.buffer + s.have, s.want - s.have};
  if (!ring_.queue_readv(s.direct ? direct_fd_.get() : file_.fd(), &s.iov, 1, s.start + s.have,
                         slot))
    return Error("snapshot reader: the ring is full");
  const int rc = ring_.submit();
  if (rc < 0) return errno_error("snapshot reader: io_uring_submit", -rc);
  s.reading = true;
  return {};
}

Result<BlockReader::Done> BlockReader::wait_one() {
  for (;;) {
    uint64_t tag = 0;
    int result = 0;
    SHOAL_TRY(ring_.wait(&tag, &result), "snapshot reader");
    if (tag >= slots_.size()) return Error("snapshot reader: a completion of no read");
    Slot& s = slots_[tag];
    s.reading = false;
    Done d{s.block, {}, {}, static_cast<unsigned>(tag)};
    const BlockEntry& e = file_.index().blocks[s.block];
    const std::string what = "snapshot block " + std::to_string(s.block);
    if (result == -EINVAL && s.direct) {
      // A file system that opened the file with O_DIRECT but refuses the reads (or wants a
      // larger alignment): from here on through the page cache, this read too (the others in
      // flight come back the same way).
      if (direct_)
        log::warn("snapshot reader: {}: O_DIRECT reads refused; reading through the page cache",
                  file_.path());
      direct_ = s.direct = false;
      if (Status q = queue(static_cast<unsigned>(tag)); !q.ok()) {
        d.read = q;
        return d;
      }
      continue;
    }
    if (result < 0) {
      d.read = errno_error(what + ": read", -result);
      return d;
    }
    s.have += static_cast<uint64_t>(result);
    if (s.have >= s.skip + e.stored_bytes) {
      d.stored = {s.buffer + s.skip, e.stored_bytes};
      return d;
    }
    if (result == 0) {
      d.read = Error(what + ": the file ends early");
      return d;
    }
    // A short read (a signal, or O_DIRECT's end of file): ask for the rest.
    if (Status q = queue(static_cast<unsigned>(tag)); !q.ok()) {
      d.read = q;
      return d;
    }
  }
}

void BlockReader::release(const Done& d) {
  if (d.slot >= slots_.size() || !slots_[d.slot].busy) return;
  slots_[d.slot].busy = false;
  --in_flight_;
}

}  // namespace shoal

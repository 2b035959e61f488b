// What one virtio-blk request chain asks for (virtio 1.x, 5.2.6), decoded and checked before
// any I/O: a header the device reads, the data buffers, and a status byte it writes. The chain
// comes from the guest, so everything is checked: directions, whole sectors, the range against
// the disk's capacity, and writes against a read-only disk. Pure: no file, no thread.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "devices/virtqueue.hpp"

namespace shoal {

inline constexpr uint32_t kBlkSector = 512;
inline constexpr uint32_t kBlkIdBytes = 20;
inline constexpr uint8_t kBlkStatusOk = 0, kBlkStatusIoErr = 1, kBlkStatusUnsupported = 2;

struct BlkRequest {
  enum class Op {
    kRead,    // preadv(iov, offset)
    kWrite,   // pwritev(iov, offset)
    kFlush,   // fsync
    kGetId,   // the disk's ID into iov (at most kBlkIdBytes)
    kAnswer,  // no I/O: answer `answer` at once
  };
  Op op = Op::kAnswer;
  // Where the status byte goes; null when the chain has no writable last buffer (it then goes
  // back with nothing written).
  uint8_t* status = nullptr;
  uint8_t answer = kBlkStatusIoErr;
  uint64_t offset = 0;  // bytes into the disk
  uint64_t bytes = 0;   // of data, the sum of iov
};

// Decodes `chain` into `out`, filling `iov` (cleared first) with its data buffers.
// `flush`: VIRTIO_BLK_F_FLUSH was negotiated.
void parse_blk_request(const DescriptorChain& chain, uint64_t capacity_sectors, bool read_only,
                       bool flush, std::vector<iovec>& iov, BlkRequest& out);

}  // namespace shoal

#include "devices/virtio_blk_request.hpp"

#include <cstring>

namespace shoal {

namespace {
constexpr uint32_t kTypeIn = 0, kTypeOut = 1, kTypeFlush = 4, kTypeGetId = 8;
constexpr uint32_t kHeaderBytes = 16;
}  // namespace

void parse_blk_request(const DescriptorChain& c, uint64_t capacity_sectors, bool read_only,
                       bool flush, std::vector<iovec>& iov, BlkRequest& out) {
  out = BlkRequest{};
  iov.clear();
  if (c.buffers.size() < 2 || !c.buffers.back().device_writable) return;
  const GuestBuffer& last = c.buffers.back();
  out.status = last.host + last.len - 1;
  // The header is one readable buffer of its own, as every driver makes it (Linux, Windows'
  // viostor, the test guest); a header split across buffers is answered as an error.
  const GuestBuffer& hdr = c.buffers.front();
  if (hdr.device_writable || hdr.len < kHeaderBytes) return;
  uint32_t type;
  uint64_t sector;
  std::memcpy(&type, hdr.host, 4);
  std::memcpy(&sector, hdr.host + 8, 8);
  const bool in = type == kTypeIn || type == kTypeGetId;
  for (size_t i = 1; i + 1 < c.buffers.size(); ++i) {
    const GuestBuffer& b = c.buffers[i];
    if (b.device_writable != in) return;  // a read's buffers are written, a write's read
    iov.push_back({b.host, b.len});
    out.bytes += b.len;
  }
  switch (type) {
    case kTypeIn:
    case kTypeOut: {
      if (type == kTypeOut && read_only) return;
      const uint64_t sectors = out.bytes / kBlkSector;
      if (iov.empty() || out.bytes % kBlkSector != 0 || sector > capacity_sectors ||
          sectors > capacity_sectors - sector)
        return;
      out.op = in ? BlkRequest::Op::kRead : BlkRequest::Op::kWrite;
      out.offset = sector * kBlkSector;
      return;
    }
    case kTypeFlush:
      if (!flush) {
        out.answer = kBlkStatusUnsupported;
        return;
      }
      out.op = BlkRequest::Op::kFlush;
      return;
    case kTypeGetId:
      out.op = BlkRequest::Op::kGetId;
      return;
    default:
      out.answer = kBlkStatusUnsupported;
      return;
  }
}

}  // namespace shoal

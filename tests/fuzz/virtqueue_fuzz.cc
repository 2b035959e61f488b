// libFuzzer target: what a malicious guest controls of a virtio-blk device — the queue's place
// and size, the rings and descriptors, and the request headers — through Virtqueue::pop() and
// parse_blk_request(), and of the channel's control queues through parse_console_control()
// and copy_to_chain(). Whatever they accept must lie inside guest RAM; a buffer that does not
// is a trap. Input: a 16-byte header (queue size, flags, ring offsets, disk capacity), then
// the first bytes of guest RAM.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/virtio_blk_request.hpp"
#include "devices/virtio_console_control.hpp"
#include "devices/virtqueue.hpp"

namespace {

constexpr uint64_t kRam = 1 << 20, kImage = 64 << 10;

shoal::GuestRam& ram() {
  static shoal::GuestRam* r = new shoal::GuestRam(std::move(*shoal::GuestRam::reserve(kRam, 40)));
  return *r;
}

void check_inside(const uint8_t* p, uint64_t len) {
  const uint8_t* base = ram().base();
  if (p < base || p + len > base + kRam) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 16) return 0;
  uint16_t desc, avail, used;
  uint64_t capacity;
  std::memcpy(&desc, data + 2, 2);
  std::memcpy(&avail, data + 4, 2);
  std::memcpy(&used, data + 6, 2);
  std::memcpy(&capacity, data + 8, 8);
  const shoal::VirtqueueAddresses at{static_cast<uint16_t>(1u << (data[0] % 10)), desc * 16ull,
                                     avail * 2ull, used * 4ull};
  std::memset(ram().base(), 0, kImage);
  std::memcpy(ram().base(), data + 16, std::min<size_t>(size - 16, kImage));
  auto q = shoal::Virtqueue::create(ram(), at);
  if (!q) return 0;
  shoal::DescriptorChain chain;
  std::vector<iovec> iov;
  shoal::BlkRequest req;
  for (int n = 0; n < 2 * at.size; ++n) {
    auto got = q->pop(chain);
    if (!got || !*got) break;
    for (const shoal::GuestBuffer& b : chain.buffers) check_inside(b.host, b.len);
    // The channel's control messages come from and go into the same kind of chain.
    (void)shoal::parse_console_control(chain);
    static const std::vector<uint8_t> kName =
        shoal::encode_console_control({0, shoal::ConsoleControl::kPortName, 1}, "shoal.channel");
    if (shoal::copy_to_chain(kName, chain) > kName.size()) __builtin_trap();
    shoal::parse_blk_request(chain, capacity, data[1] & 1, data[1] & 2, iov, req);
    if (req.status != nullptr) check_inside(req.status, 1);
    uint64_t bytes = 0;
    for (const iovec& v : iov) {
      check_inside(static_cast<const uint8_t*>(v.iov_base), v.iov_len);
      bytes += v.iov_len;
    }
    if (bytes != req.bytes) __builtin_trap();
    if ((req.op == shoal::BlkRequest::Op::kRead || req.op == shoal::BlkRequest::Op::kWrite) &&
        (req.bytes == 0 || req.bytes % 512 != 0 || req.offset / 512 + req.bytes / 512 > capacity))
      __builtin_trap();
    q->push_used(chain.head, 1);
  }
  return 0;
}

#include "devices/virtio_console_control.hpp"

#include <algorithm>
#include <cstring>

namespace shoal {

Result<ConsoleControl> parse_console_control(const DescriptorChain& chain) {
  uint8_t raw[kConsoleControlSize];
  size_t got = 0;
  for (const GuestBuffer& b : chain.buffers) {
    if (b.device_writable) continue;
    const size_t n = std::min<size_t>(b.len, kConsoleControlSize - got);
    std::memcpy(raw + got, b.host, n);
    got += n;
    if (got == kConsoleControlSize) break;
  }
  if (got < kConsoleControlSize)
    return Error("a control message of " + std::to_string(got) + " bytes, not 8");
  ConsoleControl c;  // x86 is little-endian, as virtio 1.x is
  std::memcpy(&c.id, raw, 4);
  std::memcpy(&c.event, raw + 4, 2);
  std::memcpy(&c.value, raw + 6, 2);
  return c;
}

std::vector<uint8_t> encode_console_control(const ConsoleControl& c, std::string_view extra) {
  std::vector<uint8_t> out(kConsoleControlSize + extra.size());
  std::memcpy(out.data(), &c.id, 4);
  std::memcpy(out.data() + 4, &c.event, 2);
  std::memcpy(out.data() + 6, &c.value, 2);
  // An empty string_view's data() may be null, which memcpy must not get (UBSan), even for 0.
  if (!extra.empty()) std::memcpy(out.data() + kConsoleControlSize, extra.data(), extra.size());
  return out;
}

uint32_t copy_to_chain(const std::vector<uint8_t>& message, const DescriptorChain& chain) {
  size_t at = 0;
  for (const GuestBuffer& b : chain.buffers) {
    if (!b.device_writable) continue;
    const size_t n = std::min<size_t>(b.len, message.size() - at);
    std::memcpy(b.host, message.data() + at, n);
    at += n;
    if (at == message.size()) break;
  }
  return static_cast<uint32_t>(at);
}

}  // namespace shoal

// virtio-console's control messages (virtio 1.x, 5.3.6.2, struct virtio_console_control): with
// MULTIPORT the driver and the device tell each other about ports on two control queues. The
// driver sends DEVICE_READY, PORT_READY and PORT_OPEN (the guest opened or closed a port); the
// device sends DEVICE_ADD, PORT_NAME and PORT_OPEN (the host side connected or went away).
// Parsed from guest memory, so every field is the guest's to choose: sizes are checked here,
// values by the device (devices/virtio_console.cc).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "devices/virtqueue.hpp"
#include "shoal/status.hpp"

namespace shoal {

struct ConsoleControl {
  enum Event : uint16_t {
    kDeviceReady = 0,  // driver: value 1 ready, 0 failed
    kDeviceAdd = 1,    // device: port `id` exists
    kDeviceRemove = 2,
    kPortReady = 3,    // driver: port `id` set up (value 1) or not (0)
    kConsolePort = 4,  // device: port `id` is a console (never sent: the channel is not one)
    kResize = 5,
    kPortOpen = 6,  // either side: its end of port `id` is open (1) or closed (0)
    kPortName = 7,  // device: the name follows the header
  };
  uint32_t id = 0;
  uint16_t event = 0;
  uint16_t value = 0;
};

inline constexpr size_t kConsoleControlSize = 8;
inline constexpr uint64_t kConsoleFMultiport = 1ull << 1;  // VIRTIO_CONSOLE_F_MULTIPORT

// The message in the first 8 driver-readable bytes of `chain` (they may span buffers); an
// error when there are fewer. Bytes after the header are ignored.
Result<ConsoleControl> parse_console_control(const DescriptorChain& chain);
// A message for the driver: the header (little-endian), then `extra` (a port's name).
std::vector<uint8_t> encode_console_control(const ConsoleControl& c, std::string_view extra = {});
// Copies `message` into the device-writable buffers of `chain`; the bytes written (fewer when
// the buffers are smaller: the driver's loss).
uint32_t copy_to_chain(const std::vector<uint8_t>& message, const DescriptorChain& chain);

}  // namespace shoal

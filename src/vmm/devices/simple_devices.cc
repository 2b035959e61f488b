#include "vmm/devices/simple_devices.hpp"

#include <cstring>

namespace shoal {

void I8042::read(uint64_t, std::span<uint8_t> data) {
  // Status 0: output buffer empty, input buffer empty; data 0.
  std::memset(data.data(), 0, data.size());
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == kCommandOffset && !data.empty() && data[0] == kResetCommand && on_reset_)
    on_reset_();
}

void DebugExit::read(uint64_t, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
}

void DebugExit::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == 0 && !data.empty() && on_exit_) on_exit_(data[0]);
}

}  // namespace shoal

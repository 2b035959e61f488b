#include "devices/simple_devices.hpp"

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

namespace shoal {

void DiscardPort::read(uint64_t, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
}

void DiscardPort::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset % 4 != 0 || data.size() != 4) return;  // 32-bit registers only
  uint32_t v;
  std::memcpy(&v, data.data(), 4);
  std::lock_guard lock(mu_);
  if (offset < 12) {
    regs_[offset / 4] = v;
  } else if (v == 1 && discard_) {
    discard_((uint64_t{regs_[1]} << 32) | regs_[0], uint64_t{regs_[2]} * 4096);
  }
}

}  // namespace shoal

namespace shoal {

void RestoreCounter::read(uint64_t offset, std::span<uint8_t> data) {
  const uint32_t v = count_.load();
  uint8_t bytes[4];
  std::memcpy(bytes, &v, 4);
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < 4 ? bytes[offset + i] : 0;
}

void RestoreCounter::save_state(WireWriter& out) const {
  out.put(count_.load());
}

Status RestoreCounter::restore_state(WireReader& in) {
  uint32_t v = 0;
  if (!in.get(v)) return Error("restore count: truncated");
  if (v == UINT32_MAX) return Error("restore count: at its limit");
  count_ = v + 1;
  return {};
}

}  // namespace shoal

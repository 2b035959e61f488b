// The small PC ports a guest uses to leave: the i8042 reset line and a debug-exit port.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>

#include "devices/io_bus.hpp"

namespace shoal {

// i8042 keyboard controller, just enough for the CPU reset command (0xfe to port 0x64)
// and for Linux's probe to find no keyboard. Inserted at 0x60 with length 5.
class I8042 : public BusDevice {
 public:
  explicit I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  static constexpr uint16_t kBase = 0x60;
  static constexpr uint16_t kCommandOffset = 4;  // port 0x64
  static constexpr uint8_t kResetCommand = 0xfe;

 private:
  std::function<void()> on_reset_;
};

// A write of value V ends the VM with exit code V & 0xff (QEMU's isa-debug-exit port, but
// shoal uses V itself rather than 2V+1, so a guest can exit 0).
class DebugExit : public BusDevice {
 public:
  explicit DebugExit(std::function<void(int)> on_exit) : on_exit_(std::move(on_exit)) {}
  void read(uint64_t, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  static constexpr uint16_t kPort = 0x501;

 private:
  std::function<void(int)> on_exit_;
};

}  // namespace shoal

namespace shoal {

// Lets a guest hand memory back: it writes a guest-physical address (two 32-bit halves at +0
// and +4), a page count (+8), then 1 to the command register (+12); the range is discarded
// and reads as zero afterwards. Inserted at kPort with length 16. (A test-guest interface
// until a virtio balloon exists.)
class DiscardPort : public BusDevice {
 public:
  using Discard = std::function<void(uint64_t gpa, uint64_t bytes)>;
  explicit DiscardPort(Discard discard) : discard_(std::move(discard)) {}
  void read(uint64_t, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  static constexpr uint16_t kPort = 0x510;

 private:
  std::mutex mu_;
  Discard discard_;
  uint32_t regs_[3] = {};
};

}  // namespace shoal

namespace shoal {

// How many times this guest has been restored (from a snapshot, or into a fresh VM): a 32-bit
// read at kPort gives 0 for a guest booted here and goes up by one with each restore, since
// the count is saved with the device and a restore adds one. A guest that must notice a
// restore reads it (as Linux reads the ACPI VM generation ID); the test guest's
// `touch-restore` waits on it. Writes are ignored.
class RestoreCounter : public BusDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t, std::span<const uint8_t>) override {}
  void save_state(WireWriter& out) const override;
  Status restore_state(WireReader& in) override;

  static constexpr uint16_t kPort = 0x520;

 private:
  std::atomic<uint32_t> count_{0};
};

}  // namespace shoal

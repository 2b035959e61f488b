// The ACPI power-management block of a hardware-reduced platform: the FADT's sleep control,
// sleep status and reset registers (one byte each at platform::kAcpiPmPort). Linux's
// `poweroff` writes SLP_TYP=5 with SLP_EN to the sleep control register; `reboot` writes the
// reset value to the reset register.
#pragma once

#include <functional>

#include "devices/io_bus.hpp"

namespace shoal {

class AcpiPm : public BusDevice {
 public:
  AcpiPm(std::function<void()> on_power_off, std::function<void()> on_reset)
      : on_power_off_(std::move(on_power_off)), on_reset_(std::move(on_reset)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  static constexpr uint8_t kSleepTypeShift = 2, kSleepTypeMask = 0x1c, kSleepEnable = 0x20;
  static constexpr uint8_t kWakeStatus = 0x80;

 private:
  std::function<void()> on_power_off_;
  std::function<void()> on_reset_;
};

// The ACPI PM timer: reads return a 32-bit count of 3.579545 MHz ticks of the host's monotonic
// clock; writes are ignored. No state to save: after a restore it counts from the new host's
// clock, so it may jump either way (a guest whose clocksource it were would see that; Linux
// keeps kvm-clock and uses this one for calibration).
class AcpiPmTimer : public BusDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t, std::span<const uint8_t>) override {}
  static uint32_t count_at(uint64_t monotonic_ns);
};

}  // namespace shoal

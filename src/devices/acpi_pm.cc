#include "devices/acpi_pm.hpp"

#include <cstring>

#include "arch/platform_ports.hpp"
#include "shoal/clock.hpp"

namespace shoal {

namespace {
constexpr uint64_t kControl = platform::kAcpiSleepControl - platform::kAcpiPmPort;
constexpr uint64_t kStatus = platform::kAcpiSleepStatus - platform::kAcpiPmPort;
constexpr uint64_t kReset = platform::kAcpiReset - platform::kAcpiPmPort;
}  // namespace

void AcpiPm::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  // Sleep states other than S5 are not offered (the DSDT has only \_S5_), so the guest never
  // waits here for a wake; report "awake" anyway so such a wait would end.
  if (offset == kStatus && !data.empty()) data[0] = kWakeStatus;
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  const uint8_t v = data[0];
  if (offset == kControl && (v & kSleepEnable) &&
      ((v & kSleepTypeMask) >> kSleepTypeShift) == platform::kAcpiS5SleepType) {
    if (on_power_off_) on_power_off_();
  } else if (offset == kReset && v == platform::kAcpiResetValue) {
    if (on_reset_) on_reset_();
  }
  // Writes to the status register clear wake bits, of which there are none.
}

uint32_t AcpiPmTimer::count_at(uint64_t monotonic_ns) {
  // 128 bits: ns x 3.58 M overflows 64 bits after ~85 minutes of uptime.
  const unsigned __int128 ticks =
      static_cast<unsigned __int128>(monotonic_ns) * platform::kAcpiPmTimerHz / 1'000'000'000u;
  return static_cast<uint32_t>(ticks);
}

void AcpiPmTimer::read(uint64_t offset, std::span<uint8_t> data) {
  const uint32_t count = count_at(monotonic_ns());
  std::memset(data.data(), 0, data.size());
  for (size_t i = 0; i < data.size() && offset + i < sizeof count; ++i)
    data[i] = static_cast<uint8_t>(count >> (8 * (offset + i)));
}

}  // namespace shoal

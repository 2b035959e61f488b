#include "devices/acpi_pm.hpp"

#include <cstring>

#include "arch/platform_ports.hpp"

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

}  // namespace shoal

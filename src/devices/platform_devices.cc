#include "devices/platform_devices.hpp"

#include "arch/platform_ports.hpp"
#include "devices/acpi_pm.hpp"
#include "devices/cmos_rtc.hpp"
#include "devices/simple_devices.hpp"

namespace shoal {

Result<std::shared_ptr<Uart16550>> insert_platform_devices(IoBus& pio, Vm& vm,
                                                           PlatformCallbacks callbacks) {
  auto uart = std::make_shared<Uart16550>(std::move(callbacks.console), [&vm] {
    // ISA interrupts are edges: raise, then lower.
    (void)vm.set_irq_line(platform::kCom1Irq, true);
    (void)vm.set_irq_line(platform::kCom1Irq, false);
  });
  SHOAL_TRY(pio.insert(platform::kCom1Port, platform::kCom1Length, uart, "uart 0x3f8"), "");
  SHOAL_TRY(
      pio.insert(platform::kRtcPort, platform::kRtcLength, std::make_shared<CmosRtc>(), "cmos rtc"),
      "");
  auto end = std::move(callbacks.guest_end);
  auto reset = [end](const char* how) {
    end({0, true, std::string("the guest requested a reset (") + how + ")"});
  };
  SHOAL_TRY(pio.insert(platform::kAcpiPmPort, platform::kAcpiPmLength,
                       std::make_shared<AcpiPm>(
                           [end] {
                             end({0, false, "the guest powered off (ACPI S5)"});
                           },
                           [reset] { reset("ACPI reset register"); }),
                       "acpi pm"),
            "");
  SHOAL_TRY(pio.insert(platform::kAcpiPmTimerPort, platform::kAcpiPmTimerLength,
                       std::make_shared<AcpiPmTimer>(), "acpi pm timer"),
            "");
  SHOAL_TRY(
      pio.insert(I8042::kBase, 5, std::make_shared<I8042>([reset] { reset("i8042"); }), "i8042"),
      "");
  SHOAL_TRY(pio.insert(DebugExit::kPort, 2, std::make_shared<DebugExit>([end](int code) {
                         end({code, false, "the guest exited with code " + std::to_string(code)});
                       }),
                       "debug-exit"),
            "");
  return uart;
}

}  // namespace shoal

#include "vmm/devices/platform_devices.hpp"

#include "vmm/devices/simple_devices.hpp"

namespace shoal {

namespace {
constexpr uint32_t kUartIrq = 4;
constexpr uint16_t kCom1Port = 0x3f8;
}  // namespace

Result<std::shared_ptr<Uart16550>> insert_platform_devices(IoBus& pio, Vm& vm,
                                                           PlatformCallbacks callbacks) {
  auto uart = std::make_shared<Uart16550>(std::move(callbacks.console), [&vm] {
    // ISA interrupts are edges: raise, then lower.
    (void)vm.set_irq_line(kUartIrq, true);
    (void)vm.set_irq_line(kUartIrq, false);
  });
  SHOAL_TRY(pio.insert(kCom1Port, 8, uart, "uart 0x3f8"), "");
  auto exit = std::move(callbacks.guest_exit);
  SHOAL_TRY(pio.insert(I8042::kBase, 5,
                       std::make_shared<I8042>([exit] { exit(0, "the guest requested a reset"); }),
                       "i8042"),
            "");
  SHOAL_TRY(pio.insert(DebugExit::kPort, 2, std::make_shared<DebugExit>([exit](int code) {
                         exit(code, "the guest exited with code " + std::to_string(code));
                       }),
                       "debug-exit"),
            "");
  return uart;
}

}  // namespace shoal

// The devices every shoal guest has on its device host, on the port I/O bus: the COM1 UART
// (IRQ 4), the i8042 (for the guest's reset) and the debug-exit port. Shared by the
// single-host Machine and host 0 of a pod.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "vmm/devices/io_bus.hpp"
#include "vmm/devices/uart16550.hpp"
#include "vmm/kvm.hpp"

namespace shoal {

struct PlatformCallbacks {
  std::function<void(uint8_t)> console;  // each byte the guest writes to the UART
  // The guest ended: its exit code and why ("the guest requested a reset", ...).
  std::function<void(int code, const std::string& why)> guest_exit;
};

// Inserts the devices; returns the UART (console input goes to it).
Result<std::shared_ptr<Uart16550>> insert_platform_devices(IoBus& pio, Vm& vm,
                                                           PlatformCallbacks callbacks);

}  // namespace shoal

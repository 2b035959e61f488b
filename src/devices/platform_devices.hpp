// The devices every shoal guest has on its device host, on the port I/O bus: the COM1 UART
// (IRQ 4), the CMOS clock, the ACPI power-management block (power-off, reset), the i8042 (the
// legacy reset line) and the debug-exit port. Shared by the
// single-host Machine and host 0 of a pod.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "devices/io_bus.hpp"
#include "devices/uart16550.hpp"
#include "kvm/kvm.hpp"

namespace shoal {

// How the guest ended: its exit code (0 for a power-off or reset), whether it asked for a
// reset (which `--on-reboot restart` turns into a new boot), and why, for the log.
struct GuestEnd {
  int code = 0;
  bool reset = false;
  std::string why;
};

struct PlatformCallbacks {
  std::function<void(uint8_t)> console;  // each byte the guest writes to the UART
  std::function<void(const GuestEnd&)> guest_end;
};

// Inserts the devices; returns the UART (console input goes to it).
Result<std::shared_ptr<Uart16550>> insert_platform_devices(IoBus& pio, Vm& vm,
                                                           PlatformCallbacks callbacks);

}  // namespace shoal

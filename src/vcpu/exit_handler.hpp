// What a vCPU does with one decoded exit. Pure logic over the buses: no KVM needed.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "devices/io_bus.hpp"
#include "vcpu/vcpu_exit.hpp"

namespace shoal {

struct ExitContinue {};
struct ExitPowerOff {};  // the guest is done (power-off, halt without irqchip)
struct ExitReset {};     // the guest asked for a reset (KVM_SYSTEM_EVENT_RESET)
struct ExitFail {
  std::string reason;
};
using ExitAction = std::variant<ExitContinue, ExitPowerOff, ExitReset, ExitFail>;

struct ExitBuses {
  const IoBus& pio;
  const IoBus& mmio;
};

ExitAction handle_exit(const VcpuExit& exit, const ExitBuses& buses);

}  // namespace shoal

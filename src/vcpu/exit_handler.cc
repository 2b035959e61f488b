#include "vcpu/exit_handler.hpp"

#include "shoal/log.hpp"

namespace shoal {

namespace {

ExitAction handle_io(const IoExit& io, const IoBus& pio) {
  // rep ins/outs: `count` accesses of `size` bytes, all to the same port.
  for (uint32_t i = 0; i < io.count; ++i) {
    auto chunk = io.data.subspan(size_t{i} * io.size, io.size);
    const bool handled = io.write ? pio.write(io.port, chunk) : pio.read(io.port, chunk);
    if (!handled)
      log::trace("unclaimed port 0x{:x} {} size {}", io.port, io.write ? "out" : "in", io.size);
  }
  return ExitContinue{};
}

ExitAction handle_mmio(const MmioExit& mmio, const IoBus& bus) {
  const bool handled =
      mmio.write ? bus.write(mmio.address, mmio.data) : bus.read(mmio.address, mmio.data);
  if (!handled)
    log::trace("unclaimed MMIO 0x{:x} {} {}", mmio.address, mmio.write ? "write" : "read",
               mmio.data.size());
  return ExitContinue{};
}

}  // namespace

ExitAction handle_exit(const VcpuExit& exit, const ExitBuses& buses) {
  if (const auto* io = std::get_if<IoExit>(&exit)) return handle_io(*io, buses.pio);
  if (const auto* mmio = std::get_if<MmioExit>(&exit)) return handle_mmio(*mmio, buses.mmio);
  if (std::holds_alternative<InterruptedExit>(exit)) return ExitContinue{};
  // With the in-kernel irqchip HLT stays in the kernel; a HLT exit means no irqchip and
  // nothing left to wake the vCPU, which is the guest stopping.
  if (std::holds_alternative<HaltExit>(exit)) return ExitPowerOff{};
  if (const auto* ev = std::get_if<SystemEventExit>(&exit)) {
    if (ev->type == KVM_SYSTEM_EVENT_SHUTDOWN) return ExitPowerOff{};
    if (ev->type == KVM_SYSTEM_EVENT_RESET) return ExitReset{};
  }
  return ExitFail{describe_exit(exit)};
}

}  // namespace shoal

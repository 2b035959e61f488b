#include "vcpu/vcpu_exit.hpp"

#include <cerrno>
#include <cstring>
#include <sstream>

namespace shoal {

VcpuExit decode_exit(kvm_run& run, size_t run_size) {
  switch (run.exit_reason) {
    case KVM_EXIT_IO: {
      const uint64_t len = uint64_t{run.io.size} * run.io.count;
      const uint64_t off = run.io.data_offset;
      if (run.io.size == 0 || off > run_size || len > run_size - off)
        return UnknownExit{run.exit_reason};
      return IoExit{run.io.port, run.io.size, run.io.direction == KVM_EXIT_IO_OUT, run.io.count,
                    std::span<uint8_t>(reinterpret_cast<uint8_t*>(&run) + off, len)};
    }
    case KVM_EXIT_MMIO: {
      const uint32_t len = run.mmio.len <= sizeof(run.mmio.data) ? run.mmio.len : 0;
      if (len == 0) return UnknownExit{run.exit_reason};
      return MmioExit{run.mmio.phys_addr, run.mmio.is_write != 0,
                      std::span<uint8_t>(run.mmio.data, len)};
    }
    case KVM_EXIT_HLT:
      return HaltExit{};
    case KVM_EXIT_SHUTDOWN:
      return ShutdownExit{};
    case KVM_EXIT_INTR:
      return InterruptedExit{};
    case KVM_EXIT_SYSTEM_EVENT:
      return SystemEventExit{run.system_event.type};
    case KVM_EXIT_FAIL_ENTRY:
      return FailEntryExit{run.fail_entry.hardware_entry_failure_reason, run.fail_entry.cpu};
    case KVM_EXIT_INTERNAL_ERROR: {
      InternalErrorExit e{run.internal.suberror, {}, 0};
      e.ndata = run.internal.ndata < e.data.size() ? run.internal.ndata : e.data.size();
      std::memcpy(e.data.data(), run.internal.data, e.ndata * sizeof(uint64_t));
      return e;
    }
    default:
      return UnknownExit{run.exit_reason};
  }
}

namespace {
template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;
}  // namespace

std::string describe_exit(const VcpuExit& exit) {
  std::ostringstream s;
  std::visit(Overloaded{
                 [&](const IoExit& e) {
                   s << "KVM_EXIT_IO port 0x" << std::hex << e.port << std::dec
                     << (e.write ? " out" : " in") << " size " << int{e.size} << " count "
                     << e.count;
                 },
                 [&](const MmioExit& e) {
                   s << "KVM_EXIT_MMIO 0x" << std::hex << e.address << std::dec
                     << (e.write ? " write " : " read ") << e.data.size();
                 },
                 [&](const HaltExit&) { s << "KVM_EXIT_HLT"; },
                 [&](const ShutdownExit&) { s << "KVM_EXIT_SHUTDOWN (triple fault)"; },
                 [&](const InterruptedExit&) { s << "KVM_EXIT_INTR"; },
                 [&](const SystemEventExit& e) { s << "KVM_EXIT_SYSTEM_EVENT type " << e.type; },
                 [&](const FailEntryExit& e) {
                   s << "KVM_EXIT_FAIL_ENTRY hardware reason 0x" << std::hex << e.reason << std::dec
                     << " on cpu " << e.cpu;
                 },
                 [&](const InternalErrorExit& e) {
                   s << "KVM_EXIT_INTERNAL_ERROR suberror " << e.suberror;
                   if (e.suberror == KVM_INTERNAL_ERROR_EMULATION)
                     s << " (instruction emulation failed)";
                   for (uint32_t i = 0; i < e.ndata; ++i)
                     s << (i ? " " : " data ") << std::hex << "0x" << e.data[i];
                 },
                 [&](const RunErrorExit& e) {
                   s << "KVM_RUN: " << std::strerror(e.error);
                   // KVM could not get a page of guest RAM from this process's mapping: the
                   // kernel refused it memory (ENOMEM inside get_user_pages), or a file mapped
                   // as guest RAM (--restore-image, a replica's memory.img) shrank or vanished.
                   if (e.error == EFAULT)
                     s << " (KVM could not map guest memory: host out of memory, or a file "
                          "behind guest RAM shrank)";
                 },
                 [&](const UnknownExit& e) { s << "unhandled exit reason " << e.reason; },
             },
             exit);
  return s.str();
}

}  // namespace shoal

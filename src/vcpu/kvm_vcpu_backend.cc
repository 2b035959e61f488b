// KvmVcpuBackend: what the vCPU loop (vcpu/vcpu_thread.hpp) asks of a real KVM vCPU fd.
#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>

#include "arch/interrupt_sink.hpp"
#include "vcpu/vcpu_thread.hpp"

namespace shoal {

VcpuExit KvmVcpuBackend::run() {
  if (!in_sink_) held_.reset();  // the guest may change XCR0 or a debug register
  const int rc = vcpu_.run();
  // EAGAIN: an application processor woken from wait-for-SIPI returns it once from KVM_RUN
  // (on every KVM host, bare metal too); like EINTR it means "enter again".
  if (rc == -EINTR || rc == -EAGAIN) return InterruptedExit{};
  if (rc < 0) return RunErrorExit{-rc};
  return decode_exit(*vcpu_.run_state(), run_size_);
}

void KvmVcpuBackend::request_immediate_exit() {
  // A plain store: KVM reads it on entry; the signal covers a vCPU already in the guest.
  __atomic_store_n(&vcpu_.run_state()->immediate_exit, 1, __ATOMIC_SEQ_CST);
}

void KvmVcpuBackend::clear_immediate_exit() {
  __atomic_store_n(&vcpu_.run_state()->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

std::string KvmVcpuBackend::describe_state() const {
  kvm_regs r{};
  kvm_sregs s{};
  if (!vcpu_.get_regs(r).ok() || !vcpu_.get_sregs(s).ok()) return "registers unavailable";
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "rip=0x%llx rsp=0x%llx rflags=0x%llx cs=0x%x cr0=0x%llx cr3=0x%llx cr4=0x%llx "
                "efer=0x%llx",
                static_cast<unsigned long long>(r.rip), static_cast<unsigned long long>(r.rsp),
                static_cast<unsigned long long>(r.rflags), s.cs.selector,
                static_cast<unsigned long long>(s.cr0), static_cast<unsigned long long>(s.cr3),
                static_cast<unsigned long long>(s.cr4), static_cast<unsigned long long>(s.efer));
  return buf;
}

Result<VcpuState> KvmVcpuBackend::save_state() {
  auto s = vcpu_.save_state(msr_indices_);
  if (!s) return s.error().context("save vcpu " + std::to_string(vcpu_.id()));
  held_ = VcpuFd::Held{s->xcrs, s->debugregs};
  return s;
}

Status KvmVcpuBackend::restore_state(const VcpuState& state) {
  const std::optional<VcpuFd::Held> held = std::exchange(held_, std::nullopt);
  in_sink_ = false;
  SHOAL_TRY(vcpu_.restore_state(state, held ? &*held : nullptr),
            "restore vcpu " + std::to_string(vcpu_.id()));
  return {};
}

void KvmVcpuBackend::complete_pending_exit() {
  request_immediate_exit();
  (void)vcpu_.run();  // -EINTR once the exit is completed; the guest does not run
  clear_immediate_exit();
}

Status KvmVcpuBackend::enter_sink() {
  const std::string what = "vcpu " + std::to_string(vcpu_.id()) + ": interrupt sink";
  in_sink_ = true;
  kvm_sregs sregs{};
  SHOAL_TRY(vcpu_.get_sregs(sregs), what);
  SHOAL_TRY(vcpu_.set_sregs(sink_sregs(sregs)), what);
  SHOAL_TRY(vcpu_.set_regs(sink_regs(vcpu_.id())), what);
  // Whatever was being delivered or was blocking NMIs went with the vCPU's state. A pending
  // NMI stays (no KVM_VCPUEVENT_VALID_NMI_PENDING): the sink takes it and it is forwarded.
  kvm_vcpu_events events{};
  SHOAL_TRY(vcpu_.get_vcpu_events(events), what);
  events.exception = {};
  events.interrupt = {};
  events.nmi.injected = 0;
  events.nmi.masked = 0;
  events.flags = 0;
  SHOAL_TRY(vcpu_.set_vcpu_events(events), what);
  // A halted vCPU (or an AP never started) would never run the sink's start-up.
  SHOAL_TRY(vcpu_.set_mp_state(KVM_MP_STATE_RUNNABLE), what);
  return {};
}

Result<std::vector<uint8_t>> KvmVcpuBackend::pending_interrupts() {
  const std::string what = "vcpu " + std::to_string(vcpu_.id()) + ": leave the interrupt sink";
  kvm_lapic_state lapic{};
  SHOAL_TRY(vcpu_.get_lapic(lapic), what);
  std::vector<uint8_t> vectors = pending_vectors(lapic);
  kvm_vcpu_events events{};
  kvm_regs regs{};
  SHOAL_TRY(vcpu_.get_core(regs, events), what);
  if (events.nmi.pending || events.nmi.injected) vectors.push_back(kNmiVector);
  // Taken from the IRR but not reported yet: on its way into the sink (being injected), or
  // delivered with the sink stopped before its stub's first instruction (the report).
  if (events.interrupt.injected) vectors.push_back(events.interrupt.nr);
  if (regs.rip >= kSinkStubsGpa && regs.rip < kSinkStubsGpa + 256 * kSinkStubBytes &&
      (regs.rip - kSinkStubsGpa) % kSinkStubBytes == 0) {
    const auto v = static_cast<uint8_t>((regs.rip - kSinkStubsGpa) / kSinkStubBytes);
    if (v != kSpuriousVector) vectors.push_back(v);
  }
  return vectors;
}

Result<uint32_t> KvmVcpuBackend::mp_state() {
  kvm_mp_state mp{};
  SHOAL_TRY(vcpu_.get_mp_state(mp), "vcpu " + std::to_string(vcpu_.id()));
  return mp.mp_state;
}

Result<uint8_t> KvmVcpuBackend::startup_vector() {
  kvm_sregs sregs{};
  SHOAL_TRY(vcpu_.get_sregs(sregs), "vcpu " + std::to_string(vcpu_.id()));
  return static_cast<uint8_t>(sregs.cs.selector >> 8);
}

Status KvmVcpuBackend::unblock_nmi() {
  complete_pending_exit();  // the write that reported it, before the events are touched
  kvm_vcpu_events events{};
  SHOAL_TRY(vcpu_.get_vcpu_events(events), "vcpu " + std::to_string(vcpu_.id()));
  events.nmi.masked = 0;
  events.flags = 0;
  SHOAL_TRY(vcpu_.set_vcpu_events(events), "vcpu " + std::to_string(vcpu_.id()));
  return {};
}

}  // namespace shoal

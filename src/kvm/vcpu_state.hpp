// Everything KVM holds for one vCPU, and for the VM around it, as values: what pausing saves,
// what a fresh vCPU (on this host or another) is restored from. The encodings are versioned,
// size-limited and checked field by field (fuzzed by tests/fuzz/vcpu_state_fuzz.cc).
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <vector>

#include "shoal/status.hpp"

namespace shoal {

struct VcpuState {
  uint32_t id = 0;
  kvm_mp_state mp_state{};
  kvm_regs regs{};
  kvm_sregs sregs{};
  // The 4 KiB legacy XSAVE area (KVM_GET_XSAVE): x87, SSE, AVX. Not kvm_xsave, whose C++
  // layout has a flexible array member (kvm_abi.hpp).
  std::array<uint32_t, 1024> xsave{};
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  kvm_vcpu_events events{};
  std::vector<kvm_msr_entry> msrs;  // every MSR KVM lists that it would read, TSC included
};

// The in-kernel devices and the clock: PIC (both), IOAPIC, PIT, kvmclock.
struct VmState {
  kvm_irqchip pic_master{};
  kvm_irqchip pic_slave{};
  kvm_irqchip ioapic{};
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};
};

// 2: the XSAVE area and the LAPIC page as their non-zero 64-byte blocks (1, every part whole,
// is still read: older snapshots).
inline constexpr uint32_t kVcpuStateVersion = 2;
inline constexpr uint32_t kVmStateVersion = 1;
inline constexpr size_t kMaxStateMsrs = 1024;
inline constexpr size_t kMaxVcpuStateBytes = 64 * 1024;
inline constexpr size_t kMaxVmStateBytes = 16 * 1024;

std::vector<uint8_t> encode_vcpu_state(const VcpuState& state);
// Errors name the field ("vcpu state: msrs: 5000 entries, at most 1024").
Result<VcpuState> decode_vcpu_state(const std::vector<uint8_t>& bytes);
std::vector<uint8_t> encode_vm_state(const VmState& state);
Result<VmState> decode_vm_state(const std::vector<uint8_t>& bytes);

}  // namespace shoal

// A paused machine as values, and its encoding (the state section of a snapshot file): the
// VM's in-kernel devices and clock, every vCPU, and the port devices. Versioned, size-limited,
// checked part by part; the parts are kvm/vcpu_state.hpp's own encodings.
#pragma once

#include <cstdint>
#include <vector>

#include "kvm/vcpu_state.hpp"
#include "shoal/status.hpp"

namespace shoal {

struct MachineState {
  VmState vm;
  std::vector<VcpuState> vcpus;
  std::vector<uint8_t> port_devices;  // IoBus::save_state of the port bus
  // The CPUID table the vCPUs were made from (MachineCore::cpuid_base): a restore checks this
  // host offers its features and gives the vCPUs the same table. Empty in version 1.
  std::vector<kvm_cpuid_entry2> cpuid;
};

inline constexpr uint32_t kMachineStateVersion = 2;  // 2: the CPUID table
inline constexpr size_t kMaxCpuidEntries = 256;
inline constexpr uint32_t kMaxMachineVcpus = 254;
inline constexpr size_t kMaxPortDeviceBytes = 1u << 20;

std::vector<uint8_t> encode_machine_state(const MachineState& state);
// Errors name the part ("machine state: vcpu 2: vcpu state: regs: truncated").
Result<MachineState> decode_machine_state(const std::vector<uint8_t>& bytes);

}  // namespace shoal

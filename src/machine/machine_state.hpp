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
};

inline constexpr uint32_t kMachineStateVersion = 1;
inline constexpr uint32_t kMaxMachineVcpus = 254;
inline constexpr size_t kMaxPortDeviceBytes = 1u << 20;

std::vector<uint8_t> encode_machine_state(const MachineState& state);
// Errors name the part ("machine state: vcpu 2: vcpu state: regs: truncated").
Result<MachineState> decode_machine_state(const std::vector<uint8_t>& bytes);

}  // namespace shoal

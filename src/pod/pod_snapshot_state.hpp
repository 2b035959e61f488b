// The state section of a pod member's snapshot file (docs/snapshot.md): everything but the
// page bytes, which the file's blocks hold. Versioned, size-limited, every field checked;
// errors name the field ("pod member state: home entry 3: owner 7 of 2 hosts").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "machine/machine_state.hpp"
#include "memory/coherent_memory.hpp"
#include "shoal/status.hpp"

namespace shoal {

struct PodMemberState {
  std::string pod_name;
  // One pod snapshot's files all have the same id (random, chosen by host 0); `pod up
  // --restore` refuses files of different snapshots. 0: a version 1 file, which has none.
  uint64_t snapshot_id = 0;
  uint16_t host = 0;   // this member's index in the spec
  uint16_t hosts = 0;  // the pod's size
  // The boot plan's frame payload (pod/pod_messages.hpp): a vCPU created later (one moving
  // here) is configured from it before its saved state is restored.
  std::vector<uint8_t> boot_plan;
  std::vector<uint16_t> host_of_vcpu;  // the location table, one host per vCPU of the pod
  uint64_t location_version = 0;
  // Guest addresses whose KVM slots every member creates before its vCPUs run: a page walk
  // or an instruction fetch cannot take the lazy-slot path, and may touch any member's page.
  std::vector<uint64_t> slot_gpas;
  // This host's VM (in-kernel irqchip, PIT, clock), the vCPUs it ran (exactly those the
  // location table puts here; possibly none) and its port devices (host 0: the devices).
  MachineState machine;
  CoherenceSnapshot memory;  // what this host held of the pod's memory
};

inline constexpr uint32_t kPodMemberStateVersion = 2;  // 2: the snapshot id
inline constexpr size_t kMaxPodNameBytes = 256;
inline constexpr size_t kMaxBootPlanBytes = 64 * 1024;
inline constexpr size_t kMaxPodSlots = 1 << 16;

std::vector<uint8_t> encode_pod_member_state(const PodMemberState& s);
Result<PodMemberState> decode_pod_member_state(const std::vector<uint8_t>& bytes);

}  // namespace shoal

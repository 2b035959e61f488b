// Payloads of the pod's control and member-to-member frames (net/frame.hpp, kPod* types).
// Each decoder checks sizes and ranges and names what was wrong.
//
//   kPodStart       u16 host index, u16 0, then the pod spec's YAML text
//   kPodReply       u8 ok, then a message
//   kPodExit/Leave  i32 exit code, u8 failed, then the reason
//   kPodRun / the kPodLoad reply
//                   u8 entry mode, u8 all vCPUs at entry, u16 0, u32 0, u64 entry, u64 boot info
//   kMeshJoin       u16 host index, then the pod name
//   kForwardedExit  u8 space (0 port, 1 MMIO), u8 write, u8 size (1/2/4/8), u8 0, u32 vCPU,
//                   u64 address, 8 data bytes
//   kForwardedExitDone  8 data bytes
//   kPodMove, kVcpuMigrate, kVcpuArrive, kVcpuPlaced
//                   u32 vCPU, u16 host (the destination; for kVcpuArrive the source), u16 0,
//                   u64 location version, then (kVcpuArrive only) the vCPU's saved state
//                   (kvm/vcpu_state.hpp's encoding, at most kMaxVcpuStateBytes)
#pragma once

#include <chrono>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "arch/boot_plan.hpp"
#include "net/frame.hpp"
#include "shoal/status.hpp"

namespace shoal {

struct PodStart {
  uint16_t host_index = 0;
  std::string spec_yaml;
};
net::Frame encode_pod_start(const PodStart& s);
Result<PodStart> decode_pod_start(const net::Frame& f);

struct PodReply {
  bool ok = true;
  std::string text;
};
net::Frame encode_pod_reply(const PodReply& r, uint32_t request = 0);
Result<PodReply> decode_pod_reply(const net::Frame& f);

// Control links (`shoal pod ...` to a node) watch each other with heartbeats too: a node or a
// CLI that goes silent this long is gone. Once a pod starts, its links to the `pod up` that
// started it use the pod's spec.failureTimeout instead.
inline constexpr std::chrono::milliseconds kControlLinkTimeout{5000};

struct PodOutcome {
  int exit_code = 0;
  bool failed = false;
  std::string reason;
  bool relayed = false;  // not on the wire: this member stops because another told it to
};
net::Frame encode_pod_outcome(net::MessageType type, const PodOutcome& o);
Result<PodOutcome> decode_pod_outcome(const net::Frame& f);

net::Frame encode_boot_plan(net::MessageType type, const BootPlan& plan);
Result<BootPlan> decode_boot_plan(const net::Frame& f);

struct MeshJoin {
  uint16_t host_index = 0;
  std::string pod_name;
};
net::Frame encode_mesh_join(const MeshJoin& j);
Result<MeshJoin> decode_mesh_join(const net::Frame& f);

struct ForwardedExit {
  enum class Space : uint8_t { kPort = 0, kMmio = 1 };
  Space space = Space::kPort;
  bool write = false;
  uint8_t size = 1;
  uint32_t vcpu = 0;
  uint64_t address = 0;
  std::array<uint8_t, 8> data{};
};
net::Frame encode_forwarded_exit(const ForwardedExit& e, uint32_t request);
Result<ForwardedExit> decode_forwarded_exit(const net::Frame& f);

// A vCPU moving between hosts (docs/vcpu-migration.md): the request (kPodMove), host 0's order
// to the vCPU's host (kVcpuMigrate), the state on its way (kVcpuArrive), and the new location
// announced to every member (kVcpuPlaced). `version` numbers the pod's location table.
struct VcpuMove {
  uint32_t vcpu = 0;
  uint16_t host = 0;
  uint64_t version = 0;
  std::vector<uint8_t> state;  // kVcpuArrive only
};
inline constexpr uint32_t kMaxPodVcpus = 254;  // spec.vcpus' limit (the MP table's)
net::Frame encode_vcpu_move(net::MessageType type, const VcpuMove& m);
// Checks the type is one of the four, the vCPU and host ranges, and that only kVcpuArrive
// carries a state (its size within kMaxVcpuStateBytes; its contents are decode_vcpu_state's).
Result<VcpuMove> decode_vcpu_move(const net::Frame& f);

}  // namespace shoal

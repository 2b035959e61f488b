// Payloads of the pod's control and member-to-member frames (net/frame.hpp, kPod* types).
// Each decoder checks sizes and ranges and names what was wrong.
//
//   kPodStart       u16 host index, u16 n, n bytes of restore directory (none: a fresh boot),
//                   then the pod spec's YAML text
//   kPodReply       u8 ok, then a message
//   kPodExit/Leave  i32 exit code, u8 failed, then the reason
//   kPodRun / the kPodLoad reply
//                   u8 entry mode, u8 all vCPUs at entry, u16 0, u32 0, u64 entry, u64 boot info
//   kMeshJoin       u16 host index, then the pod name
//   kForwardedExit  u8 space (0 port, 1 MMIO), u8 write, u8 size (1/2/4/8), u8 0, u32 vCPU,
//                   u64 address, 8 data bytes
//   kForwardedExitDone  8 data bytes
//   kPodMove, kVcpuMigrate, kVcpuArrive, kVcpuPlaced, kPlacementProposal
//                   u32 vCPU, u16 host (the destination; for kVcpuArrive the source), u16 0,
//                   u64 location version, then (kVcpuArrive only) the vCPU's saved state
//                   (kvm/vcpu_state.hpp's encoding, at most kMaxVcpuStateBytes)
//   kPodSnapshot    u8 stay paused, u8 0, u16 0, then the directory
//   kInterrupt      u32 vCPU, u8 vector (2: an NMI; else 16..255), u8 0, u16 0
//   kSnapshotStep, kSnapshotStepDone
//                   u8 phase, u8 ok, u8 quiet, u8 0, u32 id, u64 messages sent, u64 received,
//                   u64 location version, u32 n, n u64 guest addresses (KVM slots), then a
//                   text (the directory, or what the step did, or why it failed)
#pragma once

#include <chrono>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "arch/boot_plan.hpp"
#include "kvm/kvm.hpp"
#include "net/frame.hpp"
#include "shoal/status.hpp"

namespace shoal {

struct PodStart {
  uint16_t host_index = 0;
  std::string spec_yaml;
  std::string restore_dir;  // `pod up --restore DIR`: each member restores its file there
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

// A restoring member's kPodRun answer also names the pod snapshot its file is of
// (`snapshot_id`, 0 otherwise), so that `pod up --restore` can refuse files of two snapshots.
net::Frame encode_boot_plan(net::MessageType type, const BootPlan& plan, uint64_t snapshot_id = 0);
Result<BootPlan> decode_boot_plan(const net::Frame& f, uint64_t* snapshot_id = nullptr);

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
// kPlacementProposal (a member's placement model, pod/pod_placement.hpp) has the same shape:
// the vCPU, the host to move it to, and the location version its evidence was gathered under.
// Checks the type is one of the five, the vCPU and host ranges, and that only kVcpuArrive
// carries a state (its size within kMaxVcpuStateBytes; its contents are decode_vcpu_state's).
Result<VcpuMove> decode_vcpu_move(const net::Frame& f);

// An interrupt a host's interrupt sink took for a vCPU that runs elsewhere, on its way there
// (pod/interrupt_router.hpp).
// An interrupt for a vCPU on another host: a fixed vector (16-255), an NMI (vector 2), an INIT
// (vector 0) or a SIPI (its vector: the page of the AP's real-mode entry).
struct InterruptMessage {
  uint32_t vcpu = 0;
  uint8_t vector = 0;
  ApicDelivery mode = ApicDelivery::kFixed;
};
net::Frame encode_interrupt(const InterruptMessage& m);
Result<InterruptMessage> decode_interrupt(const net::Frame& f);

struct PodSnapshotRequest {
  bool stay_paused = false;
  std::string dir;
};
inline constexpr size_t kMaxSnapshotDirBytes = 4096;
net::Frame encode_pod_snapshot_request(const PodSnapshotRequest& r);
Result<PodSnapshotRequest> decode_pod_snapshot_request(const net::Frame& f);

// One step of a pod snapshot (pod/pod_snapshot.hpp): host 0's order, and each member's answer.
struct SnapshotStep {
  enum class Phase : uint8_t { kPause = 1, kSettle = 2, kSave = 3, kResume = 4, kCommit = 5 };
  Phase phase = Phase::kPause;
  bool ok = true;
  bool quiet = false;               // kSettle's answer
  uint32_t id = 0;                  // matches an answer to its order
  uint64_t sent = 0, received = 0;  // kSettle's answer: coherence messages so far
  uint64_t version = 0;             // kPause's and kSettle's answer: the location table's
  uint64_t snapshot_id = 0;         // kSave's order: the id every member's file records
  std::vector<uint64_t> slot_gpas;  // kPause's answer; kSave's order: every member's
  std::string text;
};
inline constexpr size_t kMaxSnapshotStepSlots = 1 << 16;
inline constexpr size_t kMaxSnapshotStepText = 16 * 1024;
net::Frame encode_snapshot_step(net::MessageType type, const SnapshotStep& s);
Result<SnapshotStep> decode_snapshot_step(const net::Frame& f);

}  // namespace shoal

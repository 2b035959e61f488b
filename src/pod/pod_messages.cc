#include "pod/pod_messages.hpp"

#include "kvm/vcpu_state.hpp"
#include "memory/coherence.hpp"
#include "shoal/wire_bytes.hpp"

namespace shoal {

using net::Frame;
using net::MessageType;
using shoal::WireReader;
using shoal::WireWriter;

namespace {

Error bad(const char* what, const std::string& why) {
  return Error(std::string(what) + " message: " + why);
}

}  // namespace

Frame encode_pod_start(const PodStart& s) {
  return Frame{MessageType::kPodStart, 0,
               WireWriter()
                   .put<uint16_t>(s.host_index)
                   .put<uint16_t>(static_cast<uint16_t>(s.restore_dir.size()))
                   .put_string(s.restore_dir)
                   .put_string(s.spec_yaml)
                   .take()};
}

Result<PodStart> decode_pod_start(const Frame& f) {
  WireReader r(f.payload);
  PodStart s;
  uint16_t dir_bytes = 0;
  if (!r.get(s.host_index) || !r.get(dir_bytes)) return bad("pod start", "shorter than its header");
  if (dir_bytes > kMaxSnapshotDirBytes)
    return bad("pod start", "restore directory of " + std::to_string(dir_bytes) + " bytes");
  s.restore_dir.resize(dir_bytes);
  if (!r.get_bytes(s.restore_dir.data(), dir_bytes)) return bad("pod start", "truncated directory");
  if (s.restore_dir.find('\0') != std::string::npos)
    return bad("pod start", "restore directory holds a NUL");
  s.spec_yaml = r.rest();
  return s;
}

Frame encode_pod_reply(const PodReply& reply, uint32_t request) {
  return Frame{MessageType::kPodReply, request,
               WireWriter().put<uint8_t>(reply.ok ? 1 : 0).put_string(reply.text).take()};
}

Result<PodReply> decode_pod_reply(const Frame& f) {
  if (f.type != MessageType::kPodReply)
    return bad("pod reply", "got message type " + std::to_string(static_cast<int>(f.type)));
  WireReader r(f.payload);
  uint8_t ok = 0;
  if (!r.get(ok) || ok > 1) return bad("pod reply", "bad status byte");
  return PodReply{ok == 1, r.rest()};
}

Frame encode_pod_outcome(MessageType type, const PodOutcome& o) {
  return Frame{type, 0,
               WireWriter()
                   .put<int32_t>(o.exit_code)
                   .put<uint8_t>(o.failed ? 1 : 0)
                   .put_string(o.reason)
                   .take()};
}

Result<PodOutcome> decode_pod_outcome(const Frame& f) {
  WireReader r(f.payload);
  PodOutcome o;
  int32_t code = 0;
  uint8_t failed = 0;
  if (!r.get(code) || !r.get(failed) || failed > 1) return bad("pod outcome", "bad header");
  o.exit_code = code;
  o.failed = failed == 1;
  o.reason = r.rest();
  return o;
}

Frame encode_boot_plan(MessageType type, const BootPlan& plan, uint64_t snapshot_id) {
  return Frame{type, 0,
               WireWriter()
                   .put<uint8_t>(plan.mode == EntryMode::kLinux64 ? 0 : 1)
                   .put<uint8_t>(plan.all_vcpus_at_entry ? 1 : 0)
                   .put<uint16_t>(0)
                   .put<uint32_t>(0)
                   .put<uint64_t>(plan.entry)
                   .put<uint64_t>(plan.boot_info)
                   .put<uint64_t>(snapshot_id)
                   .take()};
}

Result<BootPlan> decode_boot_plan(const Frame& f, uint64_t* snapshot_id) {
  WireReader r(f.payload);
  uint8_t mode = 0, all = 0;
  uint16_t z16 = 0;
  uint32_t z32 = 0;
  BootPlan p;
  if (!r.get(mode) || !r.get(all) || !r.get(z16) || !r.get(z32) || !r.get(p.entry) ||
      !r.get(p.boot_info))
    return bad("boot plan", "too short");
  if (mode > 1 || all > 1) return bad("boot plan", "bad entry mode");
  // The snapshot id: absent in the plans that files of state version 1 hold (version 2 files
  // hold plans with id 0: the id is the state's own field).
  uint64_t id = 0;
  if (r.left() != 0 && (!r.get(id) || r.left() != 0)) return bad("boot plan", "bad length");
  if (snapshot_id != nullptr) *snapshot_id = id;
  p.mode = mode == 0 ? EntryMode::kLinux64 : EntryMode::kPvh32;
  p.all_vcpus_at_entry = all == 1;
  return p;
}

Frame encode_mesh_join(const MeshJoin& j) {
  return Frame{MessageType::kMeshJoin, 0,
               WireWriter().put<uint16_t>(j.host_index).put_string(j.pod_name).take()};
}

Result<MeshJoin> decode_mesh_join(const Frame& f) {
  WireReader r(f.payload);
  MeshJoin j;
  if (!r.get(j.host_index)) return bad("mesh join", "too short");
  j.pod_name = r.rest();
  return j;
}

Frame encode_forwarded_exit(const ForwardedExit& e, uint32_t request) {
  return Frame{MessageType::kForwardedExit, request,
               WireWriter()
                   .put<uint8_t>(static_cast<uint8_t>(e.space))
                   .put<uint8_t>(e.write ? 1 : 0)
                   .put<uint8_t>(e.size)
                   .put<uint8_t>(0)
                   .put<uint32_t>(e.vcpu)
                   .put<uint64_t>(e.address)
                   .put_bytes(e.data.data(), e.data.size())
                   .take()};
}

Result<ForwardedExit> decode_forwarded_exit(const Frame& f) {
  WireReader r(f.payload);
  ForwardedExit e;
  uint8_t space = 0, write = 0, zero = 0;
  if (!r.get(space) || !r.get(write) || !r.get(e.size) || !r.get(zero) || !r.get(e.vcpu) ||
      !r.get(e.address) || !r.get_bytes(e.data.data(), e.data.size()))
    return bad("forwarded exit", "too short");
  if (space > 1 || write > 1) return bad("forwarded exit", "bad space or direction");
  if (e.size != 1 && e.size != 2 && e.size != 4 && e.size != 8)
    return bad("forwarded exit", "access size " + std::to_string(e.size));
  e.space = static_cast<ForwardedExit::Space>(space);
  e.write = write == 1;
  return e;
}

Frame encode_vcpu_move(MessageType type, const VcpuMove& m) {
  return Frame{type, 0,
               WireWriter()
                   .put<uint32_t>(m.vcpu)
                   .put<uint16_t>(m.host)
                   .put<uint16_t>(0)
                   .put<uint64_t>(m.version)
                   .put_bytes(m.state.data(), m.state.size())
                   .take()};
}

Result<VcpuMove> decode_vcpu_move(const Frame& f) {
  const bool arrive = f.type == MessageType::kVcpuArrive;
  if (!arrive && f.type != MessageType::kPodMove && f.type != MessageType::kVcpuMigrate &&
      f.type != MessageType::kVcpuPlaced && f.type != MessageType::kPlacementProposal)
    return bad("vcpu move", "got message type " + std::to_string(static_cast<int>(f.type)));
  WireReader r(f.payload);
  VcpuMove m;
  uint16_t zero = 0;
  if (!r.get(m.vcpu) || !r.get(m.host) || !r.get(zero) || !r.get(m.version))
    return bad("vcpu move", "shorter than its header");
  if (m.vcpu >= kMaxPodVcpus) return bad("vcpu move", "vcpu " + std::to_string(m.vcpu));
  if (m.host >= kMaxPodHosts) return bad("vcpu move", "host " + std::to_string(m.host));
  const size_t state_bytes = f.payload.size() - 16;
  if (!arrive && state_bytes != 0) return bad("vcpu move", "unexpected state bytes");
  if (arrive && (state_bytes == 0 || state_bytes > kMaxVcpuStateBytes))
    return bad("vcpu move", "state of " + std::to_string(state_bytes) + " bytes");
  m.state.resize(state_bytes);
  if (!r.get_bytes(m.state.data(), state_bytes)) return bad("vcpu move", "truncated state");
  return m;
}

Frame encode_interrupt(const InterruptMessage& m) {
  return Frame{MessageType::kInterrupt, 0,
               WireWriter()
                   .put<uint32_t>(m.vcpu)
                   .put<uint8_t>(m.vector)
                   .put<uint8_t>(static_cast<uint8_t>(m.mode))
                   .put<uint16_t>(0)
                   .take()};
}

Result<InterruptMessage> decode_interrupt(const Frame& f) {
  if (f.type != MessageType::kInterrupt)
    return bad("interrupt", "got message type " + std::to_string(static_cast<int>(f.type)));
  if (f.payload.size() != 8)
    return bad("interrupt", std::to_string(f.payload.size()) + " bytes, expected 8");
  WireReader r(f.payload);
  InterruptMessage m;
  uint8_t mode = 0;
  uint16_t zero16 = 0;
  (void)(r.get(m.vcpu) && r.get(m.vector) && r.get(mode) && r.get(zero16));
  if (m.vcpu >= kMaxPodVcpus) return bad("interrupt", "vcpu " + std::to_string(m.vcpu));
  const std::string vector = "vector " + std::to_string(m.vector);
  switch (static_cast<ApicDelivery>(mode)) {
    case ApicDelivery::kFixed:  // vectors 0-15 are not deliverable as fixed interrupts
      if (m.vector < 16) return bad("interrupt", vector + " as a fixed interrupt");
      break;
    case ApicDelivery::kNmi:
      if (m.vector != 2) return bad("interrupt", vector + " with an NMI (expected 2)");
      break;
    case ApicDelivery::kInit:
      if (m.vector != 0) return bad("interrupt", vector + " with an INIT (expected 0)");
      break;
    case ApicDelivery::kStartup:  // any page below 1 MiB
      break;
    default:
      return bad("interrupt", "delivery mode " + std::to_string(mode));
  }
  m.mode = static_cast<ApicDelivery>(mode);
  if (zero16 != 0) return bad("interrupt", "reserved bytes are not zero");
  return m;
}

Frame encode_pod_snapshot_request(const PodSnapshotRequest& r) {
  return Frame{MessageType::kPodSnapshot, 0,
               WireWriter()
                   .put<uint8_t>(r.stay_paused ? 1 : 0)
                   .put<uint8_t>(0)
                   .put<uint16_t>(0)
                   .put_string(r.dir)
                   .take()};
}

Result<PodSnapshotRequest> decode_pod_snapshot_request(const Frame& f) {
  if (f.type != MessageType::kPodSnapshot)
    return bad("pod snapshot", "got message type " + std::to_string(static_cast<int>(f.type)));
  WireReader r(f.payload);
  uint8_t paused = 0, zero8 = 0;
  uint16_t zero16 = 0;
  if (!r.get(paused) || !r.get(zero8) || !r.get(zero16)) return bad("pod snapshot", "too short");
  if (paused > 1) return bad("pod snapshot", "stay paused " + std::to_string(paused));
  PodSnapshotRequest req{paused == 1, r.rest()};
  if (req.dir.empty() || req.dir.size() > kMaxSnapshotDirBytes)
    return bad("pod snapshot", "directory of " + std::to_string(req.dir.size()) + " bytes");
  if (req.dir.find('\0') != std::string::npos) return bad("pod snapshot", "directory holds a NUL");
  return req;
}

Frame encode_snapshot_step(MessageType type, const SnapshotStep& s) {
  WireWriter w;
  w.put(static_cast<uint8_t>(s.phase))
      .put<uint8_t>(s.ok ? 1 : 0)
      .put<uint8_t>(s.quiet ? 1 : 0)
      .put<uint8_t>(0)
      .put(s.id)
      .put(s.sent)
      .put(s.received)
      .put(s.version)
      .put(s.snapshot_id)
      .put(static_cast<uint32_t>(s.slot_gpas.size()));
  for (uint64_t g : s.slot_gpas) w.put(g);
  w.put_string(s.text);
  return Frame{type, 0, w.take()};
}

Result<SnapshotStep> decode_snapshot_step(const Frame& f) {
  if (f.type != MessageType::kSnapshotStep && f.type != MessageType::kSnapshotStepDone)
    return bad("snapshot step", "got message type " + std::to_string(static_cast<int>(f.type)));
  WireReader r(f.payload);
  SnapshotStep s;
  uint8_t phase = 0, ok = 0, quiet = 0, zero = 0;
  uint32_t slots = 0;
  if (!r.get(phase) || !r.get(ok) || !r.get(quiet) || !r.get(zero) || !r.get(s.id) ||
      !r.get(s.sent) || !r.get(s.received) || !r.get(s.version) || !r.get(s.snapshot_id) ||
      !r.get(slots))
    return bad("snapshot step", "shorter than its header");
  if (phase < 1 || phase > 5) return bad("snapshot step", "phase " + std::to_string(phase));
  if (ok > 1 || quiet > 1 || zero != 0) return bad("snapshot step", "bad flags");
  if (slots > kMaxSnapshotStepSlots || slots > f.payload.size() / sizeof(uint64_t))
    return bad("snapshot step", std::to_string(slots) + " slots");
  s.phase = static_cast<SnapshotStep::Phase>(phase);
  s.ok = ok == 1;
  s.quiet = quiet == 1;
  s.slot_gpas.resize(slots);
  for (uint64_t& g : s.slot_gpas)
    if (!r.get(g)) return bad("snapshot step", "truncated slots");
  s.text = r.rest();
  if (s.text.size() > kMaxSnapshotStepText)
    return bad("snapshot step", "text of " + std::to_string(s.text.size()) + " bytes");
  return s;
}

}  // namespace shoal

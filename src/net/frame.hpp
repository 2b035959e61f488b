// The pod wire format: every message between shoal nodes is one frame, a fixed 16-byte
// little-endian header followed by the payload.
//
//   offset 0  u32 magic    "SHL\x01" (0x014c4853)
//          4  u16 version  kWireVersion; a peer speaking another version is refused
//          6  u16 type     MessageType
//          8  u32 length   payload bytes, at most kMaxPayload (kMaxFrameBody when sealed)
//         12  u32 request  matches a reply to its request (0: none)
//
// FrameDecoder takes bytes as they arrive from a stream and yields whole frames; anything
// malformed is an error that names what was wrong, after which the connection must close.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shoal/status.hpp"

namespace shoal::net {

inline constexpr uint32_t kFrameMagic = 0x014c4853;
// 2: coherence DISCARD; 3: every frame after the handshake sealed (net/frame_cipher.hpp),
// coherence PREFETCH and DECLINE
inline constexpr uint16_t kWireVersion = 8;  // 8: recalls name their taker; 7: INIT and SIPI in
                                             // kInterrupt; 6: RDMA connect; 5: pod snapshot
                                             // ids; 4: grants name their source
inline constexpr size_t kHeaderBytes = 16;
// A batch of 64 guest pages plus its metadata fits; nothing legitimate is larger.
inline constexpr uint32_t kMaxPayload = 512 * 1024;
// A sealed frame's payload: an inner frame of at most kMaxPayload, its type, request and tag.
inline constexpr uint32_t kMaxFrameBody = kMaxPayload + 6 + 16;

enum class MessageType : uint16_t {
  kHello = 1,     // handshake: version, nonce, node name
  kHelloAck = 2,  // handshake: nonce, proof of the secret
  kAuth = 3,      // handshake: proof of the secret
  kAuthOk = 4,    // handshake done
  kSealed = 8,    // after the handshake, every frame: another frame, encrypted and authenticated
  kPing = 16,
  kPong = 17,
  kHeartbeat = 18,      // liveness (net/link.hpp); consumed by the link, never handed up
  kRdmaConnect = 19,    // a queue pair's endpoint, both ways (net/rdma_wire.hpp)
  kRdmaReady = 20,      // the connecting side's queue pair is ready to send and receive
  kRdmaFinish = 21,     // (RDMA, in-band, last) this side sends nothing more: its end of stream
  kCoherence = 32,      // a CoherenceMessage (net/coherence_wire.hpp)
  kForwardedExit = 48,  // a port/MMIO exit forwarded to the devices' host
  kForwardedExitDone = 49,
  kBye = 64,
  // Pod control: `shoal pod up/status/down` to a node, and a node's reports back.
  kPodStart = 80,    // u16 host index, then the pod spec (YAML)
  kPodConnect = 81,  // connect the mesh to the other members
  kPodLoad = 82,     // (host 0) load the guest; the reply carries the boot plan
  kPodRun = 83,      // boot plan; start this host's vCPUs
  kPodStop = 84,
  kPodStatus = 85,
  kPodReply = 86,     // u8 ok, then text (or, for kPodLoad, the boot plan)
  kConsole = 87,      // guest console bytes (host 0 to the `pod up` that started the pod)
  kPodExit = 88,      // i32 exit code, u8 failed, then the reason
  kPodMove = 89,      // (to host 0) move a vCPU to another host (pod/pod_messages.hpp)
  kPodSnapshot = 90,  // (to host 0) snapshot the pod into a directory (pod/pod_snapshot.hpp)
  // Between the members of a pod.
  kMeshJoin = 96,       // u16 host index, then the pod name
  kPodLeave = 97,       // this member is stopping: i32 exit code, u8 failed, reason
  kVcpuMigrate = 98,    // host 0 -> a vCPU's host: pause it and send it on (docs/vcpu-migration.md)
  kVcpuArrive = 99,     // the vCPU's saved state, to the host it moves to
  kVcpuPlaced = 100,    // to every member: the vCPU runs here now (the location table)
  kSnapshotStep = 101,  // host 0 -> every member: a pod snapshot's next step
  kSnapshotStepDone = 102,  // a member -> host 0: the step's outcome
  kInterrupt = 103,  // an interrupt for a vCPU that runs on the receiver (docs/interrupts.md)
  kPlacementProposal = 104,  // a member -> host 0: move a vCPU (docs/placement.md)
  kPodDone = 105,  // after kPodLeave: this member asks for no more pages (it still answers)
};

struct Frame {
  MessageType type;
  uint32_t request = 0;
  std::vector<uint8_t> payload;
};

// The 16-byte header of a frame of `length` payload bytes.
void encode_header(MessageType type, uint32_t length, uint32_t request, uint8_t* out);
// Header + payload, ready to send. The payload must be at most kMaxPayload.
std::vector<uint8_t> encode_frame(const Frame& frame);

class FrameDecoder {
 public:
  // Appends bytes from the stream. Fails (and stays failed) on a bad header.
  Status feed(std::span<const uint8_t> bytes);
  // The next complete frame, if one has arrived.
  std::optional<Frame> next();
  // Set once the stream is unusable; next() then returns nothing.
  const std::optional<Error>& error() const;
  // Bytes held that do not yet make a whole frame.
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::vector<uint8_t> buffer_;
  size_t consumed_ = 0;
  std::optional<Error> failed_;
};

}  // namespace shoal::net

// The links from one pod member to every other member, and what travels on them: coherence
// messages, device exits forwarded to host 0 (which has the devices), and leave notices.
// One reader thread per link hands each frame to the member's handlers.
#pragma once

#include <array>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "devices/io_bus.hpp"
#include "memory/coherent_memory.hpp"
#include "net/link.hpp"
#include "pod/pod_messages.hpp"

namespace shoal {

class PodMesh : public CoherenceTransport {
 public:
  struct Handlers {
    std::function<void(CoherenceMessage)> coherence;
    // Host 0: perform the access and answer with reply_forwarded().
    std::function<void(NodeId from, const ForwardedExit&, uint32_t request)> forwarded_exit;
    std::function<void(NodeId from, const PodOutcome&)> leave;  // the member is stopping
    std::function<void(NodeId from, const Error&)> lost;        // the link broke
    // A vCPU moving (kVcpuMigrate, kVcpuArrive, kVcpuPlaced; pod/vcpu_mover.hpp), or a
    // placement proposal (kPlacementProposal). Without one, such a message ends the link as an
    // unexpected one.
    std::function<void(NodeId from, net::MessageType, VcpuMove)> vcpu;
    // A pod snapshot's steps (kSnapshotStep, kSnapshotStepDone; pod/pod_snapshot.hpp).
    std::function<void(NodeId from, net::MessageType, SnapshotStep)> snapshot;
    // An interrupt for a vCPU (kInterrupt; pod/interrupt_router.hpp).
    std::function<void(NodeId from, const InterruptMessage&)> interrupt;
  };

  // A link silent for `failure_timeout` is lost (heartbeats, net/link.hpp).
  PodMesh(NodeId self, std::vector<std::string> host_names, Handlers handlers,
          std::chrono::milliseconds failure_timeout);
  ~PodMesh() override;  // close()

  // Takes an authenticated link to `from`; false when that slot is taken or out of range.
  bool attach(NodeId from, std::shared_ptr<net::Link> link);
  // Waits until a link to every other member is attached.
  bool wait_complete(std::chrono::milliseconds timeout);
  Status send(const CoherenceMessage& m) override;
  Status send_to(NodeId to, const net::Frame& frame);
  void broadcast(const net::Frame& frame);
  // Sends a device access to host 0 and waits for the answer (a read's data).
  Result<std::array<uint8_t, 8>> forward(const ForwardedExit& e);
  void reply_forwarded(NodeId to, uint32_t request, const std::array<uint8_t, 8>& data);
  // The second phase of a leave (after kPodLeave; docs/pod.md, "Stopping"): tells every other
  // member that this one asks for no more pages (kPodDone). It still answers for its own.
  void send_done();
  // Waits until every other member has sent kPodDone or its link has ended (lost, or never
  // attached): until then this member must go on serving their page requests, since a request
  // of theirs under way (a vCPU's fault, host 0's disk I/O) may need a page held here. False
  // when `timeout` passed first.
  bool wait_others_done(std::chrono::milliseconds timeout);
  // Delivers what was sent (a leave notice) for at most kFinishGrace, then closes every link,
  // fails forwarded accesses still waiting, and joins the readers.
  void close();
  static constexpr auto kFinishGrace = std::chrono::milliseconds(500);
  const std::string& name_of(NodeId n) const { return names_.at(n); }

 private:
  void read_loop(NodeId from, net::Link* link);
  void read_frames(NodeId from, net::Link* link);
  bool done_both_ways(NodeId from);  // its kPodDone came and this member sent its own

  NodeId self_;
  std::vector<std::string> names_;
  Handlers handlers_;
  std::chrono::milliseconds failure_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<net::Link>> links_;
  std::vector<std::thread> readers_;
  size_t attached_ = 0;
  bool closed_ = false;
  std::vector<bool> done_;   // by host: its kPodDone came
  bool done_sent_ = false;   // this member's kPodDone went out
  std::vector<bool> ended_;  // by host: its reader returned (the link ended or broke)
  // Forwarded accesses waiting for host 0's answer, by request id.
  struct Pending {
    bool done = false;
    bool failed = false;
    std::array<uint8_t, 8> data{};
  };
  std::map<uint32_t, Pending*> pending_;
  uint32_t next_request_ = 1;
};

// A BusDevice that forwards every access in its range to host 0 through the mesh.
class ForwardingDevice : public BusDevice {
 public:
  ForwardingDevice(PodMesh& mesh, ForwardedExit::Space space, uint64_t base)
      : mesh_(mesh), space_(space), base_(base) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PodMesh& mesh_;
  ForwardedExit::Space space_;
  uint64_t base_;
};

}  // namespace shoal

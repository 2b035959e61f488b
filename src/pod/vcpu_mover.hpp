// Moves a running vCPU from one pod member to another (docs/vcpu-migration.md).
//
//   `shoal pod move` -> host 0: kPodMove
//   host 0 -> the vCPU's host: kVcpuMigrate (the location version the move makes)
//   there:  pause the vCPU (a pending I/O exit completes first; a forwarded exit or a page it
//           waits for arrives first), save its VcpuState, kVcpuArrive with the state -> the
//           destination, then its fd becomes a shadow in the interrupt sink, which sends the
//           interrupts still pending in its LAPIC after the state (docs/interrupts.md)
//   there:  with this host's other vCPUs paused, the shadow leaves the sink: restore, inject
//           the interrupts held for it; resume, then kVcpuPlaced -> every member (the location
//           table), and host 0 answers the request
//
// Where each vCPU runs is a pod-wide table with a version; one move at a time (host 0 refuses
// a second while one is under way). A link's reader only starts the halves of a move that do
// not wait: on the source it queues the pause and the save (then the vCPU's own thread saves
// and sends); on a destination that holds the vCPU's fd it queues the restore, and the fd's
// thread waits for the other vCPUs to pause, restores and runs the vCPU. Each hand-off to
// another thread cost ~50 us of a move on this project's hosts. What waits or creates (a
// first arrival, which creates the fd; the announcement) runs on this type's own thread. A
// move that fails half-way stops the pod: a vCPU whose state left its host cannot be
// half-resumed anywhere.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "arch/boot_plan.hpp"
#include "machine/machine_core.hpp"
#include "pod/pod_mesh.hpp"

namespace shoal {

class VcpuMover {
 public:
  struct Config {
    NodeId self = 0;
    std::vector<NodeId> host_of_vcpu;  // where each vCPU starts (the spec); one per vCPU
    std::vector<int> capacity;         // per host: how many vCPUs it may run at once
    std::vector<std::string> host_names;
  };
  // `may_create` runs `create` under the owner's lock unless the pod is stopping (then it
  // returns false and nothing is created): vCPUs appear only while the teardown cannot be
  // iterating them. `fail` stops the pod.
  using MayCreate = std::function<bool(const std::function<Status()>& create)>;
  // The interrupt router's side of a move (pod/interrupt_router.hpp): where the vCPU's
  // interrupts go from now on, and, once it is restored here, its held ones.
  struct Interrupts {
    std::function<void(uint32_t vcpu, NodeId host, uint64_t version)> retarget;
    std::function<Status(uint32_t vcpu, const std::vector<uint8_t>& pending)> release;
  };
  VcpuMover(Config config, MachineCore& core, PodMesh& mesh, MachineCore::VcpuFinished finished,
            MayCreate may_create, std::function<void(const Error&)> fail, Interrupts interrupts);
  VcpuMover(const VcpuMover&) = delete;
  VcpuMover& operator=(const VcpuMover&) = delete;
  ~VcpuMover();  // stop()

  // The plan the vCPUs booted with: a vCPU created here later is configured from it.
  void set_plan(const BootPlan& plan);
  // Host 0, on a control link's thread: moves `vcpu` to host `to` and waits until it runs there
  // (or the move fails, or `timeout` passes). Returns what `pod move` prints.
  Result<std::string> move(uint32_t vcpu, NodeId to, std::chrono::milliseconds timeout);
  // From a link's reader: queued for the mover's thread.
  void deliver(NodeId from, net::MessageType type, VcpuMove m);
  // Ends the thread; a move under way is abandoned (the pod is stopping). After the vCPUs
  // were told to stop: a pause waiting on one then returns.
  void stop();

  // "0@h0 1@h1 ... (v3)": the location table as this member knows it.
  std::string describe() const;
  std::vector<uint32_t> vcpus_here() const;
  uint64_t version() const;
  // For a pod snapshot: the plan and the location table with its version; and, restoring one
  // into a fresh pod before any vCPU runs, the table as it was saved.
  std::optional<BootPlan> plan() const;
  std::pair<std::vector<NodeId>, uint64_t> table() const;
  Status restore_table(const std::vector<NodeId>& host_of_vcpu, uint64_t version);

 private:
  struct Work {
    NodeId from = 0;
    net::MessageType type{};
    VcpuMove move;
    std::function<void()> task;  // instead of a message: what another thread hands over
  };
  void loop();
  void queue(Work w);
  // Starts a move on the vCPU's host; waits for nothing (any thread).
  void migrate(const VcpuMove& m);
  // migrate()'s second half, on the vCPU's own thread once it has saved itself.
  // `ordered`: when migrate() began (monotonic ns), for the log.
  void send_state(const VcpuMove& m, VcpuThread& v, uint64_t ordered, Result<VcpuState> state);
  // kVcpuArrive's state, checked to be the moving vCPU's.
  static Result<VcpuState> decode_arrival(const VcpuMove& m);
  // A first arrival on this host: creates the vCPU's fd (this type's thread).
  void arrive(NodeId from, const VcpuMove& m);
  // An arrival into the shadow fd this host keeps: started on the link's reader, done on the
  // fd's thread. False if there is no fd here yet.
  bool arrive_in_shadow(NodeId from, VcpuMove& m);
  // The destination's last step, on this type's thread: tells every member, logs the time.
  void announce(NodeId from, const VcpuMove& m, const char* fd, uint64_t came, uint64_t resumed);
  void place(uint32_t vcpu, NodeId host, uint64_t version);

  Config config_;
  MachineCore& core_;
  PodMesh& mesh_;
  MachineCore::VcpuFinished finished_;
  MayCreate may_create_;
  std::function<void(const Error&)> fail_;
  Interrupts interrupts_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // work_, and the table for move()
  std::deque<Work> work_;
  bool stop_ = false;
  std::optional<BootPlan> plan_;
  std::vector<NodeId> host_of_vcpu_;
  std::vector<uint64_t> version_of_vcpu_;  // the version of the move that set each entry
  uint64_t version_ = 0;                   // the newest version seen
  std::optional<uint32_t> moving_;         // host 0: the move under way
  std::string move_error_;                 // host 0: why it failed, if it did
  std::thread thread_;
};

}  // namespace shoal

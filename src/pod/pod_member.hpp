// One host's part of a running pod: a KVM VM with this host's vCPUs, the whole guest RAM
// mapping kept coherent with the other members (memory/coherent_memory.hpp), and the mesh.
// Host 0 has the devices and loads the guest; the other hosts forward their device exits to
// it. Built in phases that `shoal pod up` drives on every member: create (VM, memory, devices),
// connect_mesh, load (host 0), run (vCPUs). Any member stopping stops the whole pod: it tells the
// others (kPodLeave), and a member whose link breaks stops too.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "arch/boot_plan.hpp"
#include "devices/virtio_mmio.hpp"
#include "machine/machine_core.hpp"
#include "memory/coherent_memory.hpp"
#include "net/rdma_link.hpp"
#include "net/tcp_link.hpp"
#include "pod/interrupt_router.hpp"
#include "pod/pod_mesh.hpp"
#include "pod/pod_placement.hpp"
#include "pod/pod_snapshot.hpp"
#include "pod/pod_snapshot_state.hpp"
#include "pod/pod_spec.hpp"
#include "pod/vcpu_mover.hpp"
#include "shoal/first_outcome.hpp"

namespace shoal {

struct PodMemberConfig {
  PodSpec spec;
  NodeId self = 0;
  net::LinkIdentity identity;
  // Host 0: the guest's console output, in order.
  std::function<void(const std::string&)> console;
  // Called once, on the member's monitor thread, after everything of the pod has stopped.
  std::function<void(const PodOutcome&)> finished;
  // `pod up --restore DIR`: every member's load() restores DIR/<its name>.snap instead.
  std::string restore_dir;
};

class PodMember {
 public:
  static Result<std::unique_ptr<PodMember>> create(PodMemberConfig config);
  PodMember(const PodMember&) = delete;
  PodMember& operator=(const PodMember&) = delete;
  ~PodMember();  // stops the pod and waits for it

  // Connects to the members before this one (the later ones connect here, see attach()) and
  // waits until a link to every member is up.
  Status connect_mesh();
  // A member that connected here (its join arrived on `link`). With transport rdma the TCP link
  // is upgraded to an RdmaLink first (net/rdma_link.hpp).
  bool attach(NodeId from, std::shared_ptr<net::TcpLink> link);
  // Host 0: loads the guest into (coherent) RAM; the plan is what every member's vCPUs need.
  // Restoring, every member: restores its snapshot file (the plan is the one saved).
  Result<BootPlan> load();
  // After a restoring load(): the id of the pod snapshot this member's file is of (0: a file
  // of state version 1, which has none).
  uint64_t restored_snapshot_id() const { return restored_snapshot_id_; }
  Status run(const BootPlan& plan);
  // Host 0: moves a running vCPU to host `to` (`shoal pod move`; pod/vcpu_mover.hpp).
  Result<std::string> move_vcpu(uint32_t vcpu, NodeId to);
  // Host 0: snapshots the pod into `dir` (`shoal pod snapshot`; pod/pod_snapshot.hpp).
  Result<std::string> snapshot(const std::string& dir, bool stay_paused);
  // Host 0: pauses or resumes every member's vCPUs (the control API; pod/pod_snapshot.hpp).
  Status pause_pod();
  Status resume_pod();
  std::string state() const;
  // Prometheus text: this member's vCPUs and page traffic.
  std::string metrics() const;
  // Stops the pod (idempotent, any thread); `outcome` is what is reported.
  void stop(const PodOutcome& outcome);
  bool stopped() const { return outcome_.decided(); }
  void wait_stopped();
  std::string status() const;
  const PodSpec& spec() const { return config_.spec; }

 private:
  explicit PodMember(PodMemberConfig config);
  Status build_devices();  // pod_member_devices.cc
  Status insert_virtio_devices();
  void stop_virtio_devices();
  void leave_guest_memory();  // monitor(): the second phase of a leave
  static constexpr auto kLeaveGrace = std::chrono::seconds(5);  // beyond the failure timeout
  Result<std::shared_ptr<net::Link>> mesh_link(std::shared_ptr<net::TcpLink> tcp, bool connecting);
  void serve_forwarded(NodeId from, const ForwardedExit& e, uint32_t request);
  void device_loop();
  void stop_device_thread();
  void on_vcpu_finished(int id, const ExitAction& action, const std::string& state);
  void write_console(uint8_t byte);
  void flush_console();
  void monitor();
  // Pod snapshots (pod/pod_member_snapshot.cc).
  Status pause_here();
  void resume_here();
  Result<std::string> save_snapshot(const std::string& dir, const std::vector<uint64_t>& slots,
                                    uint64_t snapshot_id);
  Status commit_snapshot(const std::string& dir);
  Result<BootPlan> restore();
  Status run_restored(const BootPlan& plan);
  std::vector<int> vcpus_here() const;  // the location table's, for this host
  // Every vCPU of the pod not in `here` gets an fd here, parked as a shadow in the interrupt
  // sink (pod/interrupt_router.hpp). Before start_vcpus.
  Status create_shadows(const std::vector<int>& here, const BootPlan& plan);

  PodMemberConfig config_;
  const PodHost& me() const { return config_.spec.hosts[config_.self]; }
  // Teardown (monitor()): vCPUs stopped, memory, mesh, vCPUs joined; then, as members go,
  // the memory stack and the mesh before the core (RAM, VM).
  std::unique_ptr<MachineCore> core_;  // VM, RAM, buses, vCPUs: the same as `shoal run`'s
  // spec.placement auto: before the memory that feeds it (its thread is stopped in monitor()).
  std::unique_ptr<PlacementRunner> placement_;
  std::shared_ptr<net::RdmaDevice> rdma_;  // transport rdma: this host's verbs device
  std::unique_ptr<PodMesh> mesh_;
  std::unique_ptr<CoherentMemory> memory_;
  std::unique_ptr<InterruptRouter> router_;  // after the mesh and the core it uses
  std::unique_ptr<VcpuMover> mover_;         // after the mesh and the core it uses; stopped first
  std::unique_ptr<PodSnapshotter> snapshotter_;    // as the mover
  std::mutex control_mu_;                          // host 0: a move and a snapshot never overlap
  std::optional<PodMemberState> restored_;         // load() restored a snapshot; run() uses it
  std::atomic<uint64_t> restored_snapshot_id_{0};  // and the id of the pod snapshot it is of
  std::string state_ = "created";

  // Host 0: other hosts' device exits, served on the device thread (never on a link reader).
  struct ForwardedWork {
    NodeId from;
    ForwardedExit exit;
    uint32_t request;
  };
  std::mutex device_mu_;
  std::condition_variable device_cv_;
  std::deque<ForwardedWork> device_queue_;
  bool device_stop_ = false;
  std::thread device_thread_;
  // Host 0's spec.disks, spec.nets and spec.channel, in that order.
  std::vector<std::shared_ptr<VirtioMmio>> virtio_;

  std::mutex console_mu_;
  std::string console_line_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // torn_down_
  // Offered under mu_, so run() (which checks it under mu_ before starting the vCPUs) and the
  // monitor (which stops them once it is decided) cannot miss each other.
  FirstOutcome<PodOutcome> outcome_;
  bool torn_down_ = false;
  std::thread monitor_;
};

}  // namespace shoal

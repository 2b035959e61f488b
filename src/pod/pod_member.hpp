// One host's part of a running pod: a KVM VM with this host's vCPUs, the whole guest RAM
// mapping kept coherent with the other members (memory/coherent_memory.hpp), and the mesh.
// Host 0 has the devices and loads the guest; the other hosts forward their device exits to
// it. Built in phases that `shoal pod up` drives on every member: create (VM, memory, vCPUs),
// connect_mesh, load (host 0), run. Any member stopping stops the whole pod: it tells the
// others (kPodLeave), and a member whose link breaks stops too.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "arch/boot_plan.hpp"
#include "arch/guest_ram.hpp"
#include "devices/io_bus.hpp"
#include "kvm/kvm.hpp"
#include "memory/coherent_memory.hpp"
#include "net/tcp_link.hpp"
#include "pod/pod_mesh.hpp"
#include "pod/pod_spec.hpp"
#include "shoal/first_outcome.hpp"
#include "vcpu/vcpu_thread.hpp"

namespace shoal {

struct PodMemberConfig {
  PodSpec spec;
  NodeId self = 0;
  net::LinkIdentity identity;
  // Host 0: the guest's console output, in order.
  std::function<void(const std::string&)> console;
  // Called once, on the member's monitor thread, after everything of the pod has stopped.
  std::function<void(const PodOutcome&)> finished;
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
  bool attach(NodeId from, std::shared_ptr<net::Link> link);
  // Host 0: loads the guest into (coherent) RAM; the plan is what every member's vCPUs need.
  Result<BootPlan> load();
  Status run(const BootPlan& plan);
  // Stops the pod (idempotent, any thread); `outcome` is what is reported.
  void stop(const PodOutcome& outcome);
  bool stopped() const { return outcome_.decided(); }
  void wait_stopped();
  std::string status() const;
  const PodSpec& spec() const { return config_.spec; }

 private:
  explicit PodMember(PodMemberConfig config);
  Status build_devices();
  void serve_forwarded(NodeId from, const ForwardedExit& e, uint32_t request);
  void on_vcpu_finished(int id, const ExitAction& action, const std::string& state);
  void write_console(uint8_t byte);
  void flush_console();
  void monitor();

  PodMemberConfig config_;
  const PodHost& me() const { return config_.spec.hosts[config_.self]; }
  std::unique_ptr<Kvm> kvm_;
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<GuestRam> ram_;
  std::unique_ptr<PodMesh> mesh_;
  std::unique_ptr<CoherentMemory> memory_;
  std::vector<std::shared_ptr<class RamSlots>> ram_slots_;
  IoBus pio_{"port I/O"};
  IoBus mmio_{"MMIO"};
  std::vector<VcpuFd> vcpu_fds_;  // until run() hands them to their threads
  std::vector<std::unique_ptr<VcpuThread>> vcpus_;
  std::string state_ = "created";

  std::mutex console_mu_;
  std::string console_line_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // torn_down_
  // Offered under mu_, so run() (which checks it under mu_ before starting the vCPUs) and the
  // monitor (which stops them once it is decided) cannot miss each other.
  FirstOutcome<PodOutcome> outcome_;
  bool torn_down_ = false;
  std::atomic<bool> tell_others_{true};
  std::thread monitor_;
};

}  // namespace shoal

// What every guest on this host is made of, whether it runs alone (`shoal run`, Machine) or as
// one member of a pod (`shoal node`, PodMember): a single host is a pod of one, and both build
// the VM with its in-kernel platform, guest RAM with its KVM slots, the two buses and the
// vCPUs through this one type. Each adds on top only its memory stack (GuestMemoryManager or
// CoherentMemory), its devices (the platform devices, or forwarding to the pod's host 0) and
// how an outcome is reported.
//
// Teardown order (the owner calls stop_vcpus() first): vCPU threads and the PIT thread are
// stopped and joined, then the owner's memory stack goes (a vCPU may wait on one of its faults
// until then), then this core: RAM slots, guest RAM, the VM, /dev/kvm.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "arch/boot_plan.hpp"
#include "arch/guest_ram.hpp"
#include "devices/io_bus.hpp"
#include "devices/virtio_mmio.hpp"
#include "kvm/kvm.hpp"
#include "shoal/status.hpp"
#include "vcpu/vcpu_thread.hpp"

namespace shoal {

class RamSlots;

// What a vCPU's last exit means for the whole guest.
struct VcpuEnd {
  bool failed = false;
  bool reset = false;  // the guest asked for a reset rather than a power-off
  std::string reason;  // "vcpu 2: the guest powered off", "vcpu 0: KVM_RUN: ... (state)"
};
VcpuEnd describe_vcpu_end(int id, const ExitAction& action, const std::string& state);

// What MachineCore::create sets up besides the VM and its dormant RAM.
struct MachineCoreOptions {
  // Guest addresses whose slots are created at once, not on first access (a restore's pages).
  std::vector<uint64_t> early_gpas;
  // Every slot at once: a member of a pod of more than one host (memory/ram_slots.hpp says why).
  bool every_slot = false;
  // A pod member's: its vCPU fds run the interrupt sink while their vCPU runs on another host
  // (arch/interrupt_sink.hpp).
  bool interrupt_sink = false;
};

class MachineCore {
 public:
  // A VM with its platform (irqchip, PIT) and `memory_bytes` of dormant guest RAM whose KVM
  // slots are created on first access (memory/ram_slots.hpp), except the boot slot and those
  // the options ask for, created before the irqchip, as is the interrupt sink's: after it,
  // each memslot change first waits out the SRCU grace period the irqchip leaves (5-11 ms here).
  static Result<std::unique_ptr<MachineCore>> create(Kvm kvm, uint64_t memory_bytes,
                                                     const MachineCoreOptions& options = {});
  MachineCore(const MachineCore&) = delete;
  MachineCore& operator=(const MachineCore&) = delete;
  ~MachineCore();  // stops the vCPUs if the owner has not

  Kvm& kvm() { return kvm_; }
  Vm& vm() { return vm_; }
  GuestRam& ram() { return ram_; }
  const GuestRam& ram() const { return ram_; }
  IoBus& pio() { return pio_; }
  IoBus& mmio() { return mmio_; }
  // Puts `devices` in virtio-mmio slots 0, 1, ... (arch/platform_ports.hpp), each behind its
  // transport (ioeventfds, irqfd); returns the transports, which the owner stops before its
  // memory stack (their workers use guest memory).
  Result<std::vector<std::shared_ptr<VirtioMmio>>> insert_virtio(
      std::vector<std::unique_ptr<VirtioDevice>> devices);

  // Creates the KVM slots holding what the VMM wrote and the pages at `gpas`: instruction
  // fetches and page walks cannot take the lazy-slot MMIO path, so these exist before any
  // vCPU runs.
  Status map_for_boot(const std::vector<uint64_t>& gpas = {});
  // A guest address in each KVM slot created so far.
  std::vector<uint64_t> slot_gpas() const;

  // The CPUID table vCPUs are made from (each with its own APIC ID filled in): KVM's supported
  // set (a pod member's without the paravirtual features one host's kernel keeps, see
  // without_host_local_features), or, restoring, the one the snapshot's guest saw. A snapshot
  // saves it.
  const std::vector<kvm_cpuid_entry2>& cpuid_base() const {
    if (!saved_cpuid_.empty()) return saved_cpuid_;
    return pod_cpuid_.empty() ? kvm_.supported_cpuid() : pod_cpuid_;
  }
  // Restoring: vCPUs created from now on get `saved` (a snapshot's table), once this host is
  // checked to offer every feature in it. Empty (an older snapshot): KVM's own set, as before.
  Status use_saved_cpuid(const std::vector<kvm_cpuid_entry2>& saved);

  using VcpuFinished = VcpuThread::Finished;
  // Where every vCPU created from now on reports the interrupts its sink takes.
  void set_interrupt_sink(VcpuThread::SinkVector sink) { sink_ = std::move(sink); }
  // Creates vCPUs `ids` (of `total` in the guest), configured to start as `plan` says, each
  // with its thread (not started).
  Status create_vcpus(const std::vector<int>& ids, int total, const BootPlan& plan,
                      const VcpuFinished& finished);
  std::vector<std::unique_ptr<VcpuThread>>& vcpus() { return vcpus_; }
  // vCPU `id`'s thread, if it was created here (nullptr otherwise).
  VcpuThread* vcpu(int id);
  void start_vcpus();
  void command_vcpus(VcpuCommand c);
  void command_vcpus(const std::vector<int>& ids, VcpuCommand c);  // those created here
  // Pauses vCPUs `ids` and waits until each is paused. Not forever: a vCPU waiting on a fault
  // that will never be served does not take the pause, so `giving_up` is asked every 100 ms
  // (the owner is ending: whoever pauses must return so that it can be joined).
  Status pause_vcpus(const std::vector<int>& ids, const std::function<bool()>& giving_up);
  // Restores the VM's state and the port devices', then posts each vCPU's restore behind a
  // pause (each vCPU restores itself on its own thread, before it runs if not started yet);
  // the owner resumes them once every future says ok.
  Result<std::vector<std::future<Status>>> queue_restore(const VmState& vm,
                                                         const std::vector<uint8_t>& port_devices,
                                                         std::vector<VcpuState> vcpus);
  // Stops every vCPU and joins its thread. Before the memory stack goes.
  void stop_vcpus();

 private:
  MachineCore(Kvm kvm, Vm vm, GuestRam ram);

  Kvm kvm_;
  Vm vm_;
  GuestRam ram_;
  IoBus pio_{"port I/O"};
  IoBus mmio_{"MMIO"};
  std::vector<std::shared_ptr<RamSlots>> ram_slots_;
  std::vector<std::unique_ptr<VcpuThread>> vcpus_;
  struct FreeBytes {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, FreeBytes> sink_memory_;  // the sink's slot, private to this host
  VcpuThread::SinkVector sink_;
  std::vector<kvm_cpuid_entry2> saved_cpuid_;  // use_saved_cpuid's
  std::vector<kvm_cpuid_entry2> pod_cpuid_;    // a pod member's (interrupt_sink)
  // Turns the PIT's tick reinjection off beside the running guest, started with the vCPUs
  // (Vm::disable_pit_reinjection says why; started earlier, its grace periods slowed the
  // vCPUs' start). Joined by stop_vcpus().
  std::thread pit_thread_;
};

}  // namespace shoal

// Carries interrupts to the host that runs their vCPU (docs/interrupts.md).
//
// Every member has a vCPU fd for every vCPU of the pod: the ones it runs, and for the others a
// shadow parked in the interrupt sink (arch/interrupt_sink.hpp). KVM's in-kernel LAPIC delivers
// an IPI, or an IOAPIC interrupt, to the fd with the destination's APIC ID in the sender's VM;
// when that fd is a shadow, its sink reports the vector here (on_sink), and this sends it as
// kInterrupt to the host that runs the vCPU, where deliver() injects it with KVM_SIGNAL_MSI.
//
// Moves (pod/vcpu_mover.hpp) keep every interrupt exactly once: the source leaves the pending
// ones in its fd's LAPIC for its sink to take once the state has left (they follow the state
// on the same link); the destination holds what arrives for the vCPU from expect() until its
// state is restored, then injects what it held and what its sink's LAPIC still had (release).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "kvm/kvm.hpp"
#include "pod/pod_mesh.hpp"

namespace shoal {

class InterruptRouter {
 public:
  // `host_of_vcpu`: where each vCPU runs at the start (the spec, or a restored table).
  InterruptRouter(NodeId self, std::vector<NodeId> host_of_vcpu, Vm& vm, PodMesh& mesh);
  InterruptRouter(const InterruptRouter&) = delete;
  InterruptRouter& operator=(const InterruptRouter&) = delete;

  // A shadow's sink took `vector` (an NMI: kNmi and 2), or a shadow of an AP not started yet
  // took an INIT or SIPI (on that vCPU fd's thread).
  void on_sink(uint32_t vcpu, ApicDelivery mode, uint8_t vector);
  // kInterrupt from a member (on the link's reader).
  void deliver(NodeId from, const InterruptMessage& m);
  // Where `vcpu`'s interrupts go from now on, if `version` is newer than what set it last.
  void retarget(uint32_t vcpu, NodeId host, uint64_t version);
  // `vcpu` is on its way here (its kVcpuArrive was read): hold its interrupts from now on.
  void expect(uint32_t vcpu, uint64_t version);
  // `vcpu` was restored here: inject what was held and `pending` (its sink's LAPIC's), and
  // deliver the next ones as they come.
  Status release(uint32_t vcpu, const std::vector<uint8_t>& pending);
  // Restoring a pod snapshot: the table as it was saved.
  void reset(const std::vector<NodeId>& host_of_vcpu, uint64_t version);

  uint64_t forwarded() const { return forwarded_.load(); }
  uint64_t received() const { return received_.load(); }

 private:
  Status inject(const InterruptMessage& m);
  void send(const InterruptMessage& m, NodeId to);

  const NodeId self_;
  Vm& vm_;
  PodMesh& mesh_;
  std::mutex mu_;
  std::vector<NodeId> host_of_vcpu_;
  std::vector<uint64_t> version_of_vcpu_;
  std::vector<bool> arriving_;
  std::vector<std::vector<InterruptMessage>> held_;
  std::atomic<uint64_t> forwarded_{0}, received_{0};
};

}  // namespace shoal

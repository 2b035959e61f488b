#include "pod/interrupt_router.hpp"

#include "arch/interrupt_sink.hpp"
#include "shoal/log.hpp"

namespace shoal {

InterruptRouter::InterruptRouter(NodeId self, std::vector<NodeId> host_of_vcpu, Vm& vm,
                                 PodMesh& mesh)
    : self_(self),
      vm_(vm),
      mesh_(mesh),
      host_of_vcpu_(std::move(host_of_vcpu)),
      version_of_vcpu_(host_of_vcpu_.size(), 0),
      arriving_(host_of_vcpu_.size(), false),
      held_(host_of_vcpu_.size()) {}

void InterruptRouter::on_sink(uint32_t vcpu, ApicDelivery mode, uint8_t vector) {
  const InterruptMessage m{vcpu, vector, mode};
  NodeId to = 0;
  {
    std::lock_guard lock(mu_);
    if (vcpu >= host_of_vcpu_.size()) return;
    to = host_of_vcpu_[vcpu];
    if (to == self_) {
      // The vCPU is on its way here (or its table entry is about to say it left): what its
      // shadow took waits for its state.
      held_[vcpu].push_back(m);
      return;
    }
  }
  send(m, to);
}

void InterruptRouter::deliver(NodeId from, const InterruptMessage& m) {
  (void)from;
  received_.fetch_add(1, std::memory_order_relaxed);
  NodeId to = 0;
  {
    std::lock_guard lock(mu_);
    if (m.vcpu >= host_of_vcpu_.size()) return;
    to = host_of_vcpu_[m.vcpu];
    if (to == self_ && arriving_[m.vcpu]) {
      held_[m.vcpu].push_back(m);
      return;
    }
  }
  // Not here (any more): on to where this host's table says it went. Tables agree again once
  // the move's kVcpuPlaced has reached every member.
  if (to != self_) return send(m, to);
  if (Status s = inject(m); !s.ok())
    log::warn("interrupt for vcpu {}: {}", m.vcpu, s.error().message());
}

void InterruptRouter::retarget(uint32_t vcpu, NodeId host, uint64_t version) {
  std::lock_guard lock(mu_);
  if (vcpu >= host_of_vcpu_.size() || version <= version_of_vcpu_[vcpu]) return;
  host_of_vcpu_[vcpu] = host;
  version_of_vcpu_[vcpu] = version;
}

void InterruptRouter::expect(uint32_t vcpu, uint64_t version) {
  std::lock_guard lock(mu_);
  if (vcpu >= host_of_vcpu_.size() || version <= version_of_vcpu_[vcpu]) return;
  host_of_vcpu_[vcpu] = self_;
  version_of_vcpu_[vcpu] = version;
  arriving_[vcpu] = true;
}

Status InterruptRouter::release(uint32_t vcpu, const std::vector<uint8_t>& pending) {
  std::vector<InterruptMessage> all;
  all.reserve(pending.size());
  for (uint8_t v : pending) all.push_back({vcpu, v, sink_delivery(v)});
  {
    std::lock_guard lock(mu_);
    if (vcpu >= host_of_vcpu_.size()) return Error("vcpu " + std::to_string(vcpu));
    all.insert(all.end(), held_[vcpu].begin(), held_[vcpu].end());
    held_[vcpu].clear();
    arriving_[vcpu] = false;
  }
  for (const InterruptMessage& m : all) SHOAL_TRY(inject(m), "");
  return {};
}

void InterruptRouter::reset(const std::vector<NodeId>& host_of_vcpu, uint64_t version) {
  std::lock_guard lock(mu_);
  host_of_vcpu_ = host_of_vcpu;
  version_of_vcpu_.assign(host_of_vcpu_.size(), version);
  arriving_.assign(host_of_vcpu_.size(), false);
  held_.assign(host_of_vcpu_.size(), {});
}

Status InterruptRouter::inject(const InterruptMessage& m) {
  auto taken = vm_.signal_msi(m.vcpu, m.vector, m.mode);
  if (!taken) return taken.error();
  // Not taken: the vCPU's LAPIC is software-disabled, which drops a fixed interrupt on
  // hardware too.
  if (!*taken)
    log::debug("vcpu {}: vector {} (mode {}) dropped by its LAPIC", m.vcpu, m.vector,
               static_cast<int>(m.mode));
  return {};
}

void InterruptRouter::send(const InterruptMessage& m, NodeId to) {
  forwarded_.fetch_add(1, std::memory_order_relaxed);
  // A link that is down stops the pod through the mesh's own error path.
  (void)mesh_.send_to(to, encode_interrupt(m));
}

}  // namespace shoal

#include "pod/placement.hpp"

#include <algorithm>
#include <optional>

namespace shoal {

PlacementModel::PlacementModel(PlacementConfig config, NodeId self, size_t vcpus, size_t hosts)
    : config_(config), self_(self), hosts_(hosts), vcpus_(vcpus) {
  for (Vcpu& v : vcpus_) v.faults.assign(hosts, 0);
}

void PlacementModel::remote_fault(uint32_t vcpu, NodeId source) {
  if (vcpu >= vcpus_.size() || source >= hosts_) return;
  ++vcpus_[vcpu].faults[source];
}

std::vector<PlacementProposal> PlacementModel::end_window(uint64_t now_ns,
                                                          const std::vector<NodeId>& host_of_vcpu,
                                                          uint64_t version,
                                                          const std::vector<int>& capacity) {
  std::vector<PlacementProposal> out;
  if (host_of_vcpu.size() != vcpus_.size() || capacity.size() != hosts_) return out;
  const bool table_changed = version != last_version_;
  std::vector<int> load(hosts_, 0);
  for (NodeId h : host_of_vcpu)
    if (h < hosts_) ++load[h];
  std::optional<PlacementProposal> best;
  for (uint32_t id = 0; id < vcpus_.size(); ++id) {
    Vcpu& v = vcpus_[id];
    const bool here = host_of_vcpu[id] == self_;
    if (here && (last_table_.empty() || last_table_[id] != self_)) v.here_since_ns = now_ns;
    if (table_changed) {
      // Gathered with vCPUs where they no longer are: start over.
      v.streak = 0;
      v.streak_host = CoherenceMessage::kNoSource;
    }
    uint64_t total = 0;
    NodeId top = 0;
    for (size_t h = 0; h < hosts_; ++h) {
      total += v.faults[h];
      if (v.faults[h] > v.faults[top]) top = static_cast<NodeId>(h);
    }
    const uint64_t from_top = v.faults[top];
    std::fill(v.faults.begin(), v.faults.end(), 0);
    if (!here || table_changed) continue;
    const bool candidate =
        total >= config_.min_faults && top != self_ &&
        static_cast<double>(from_top) >= config_.dominant_share * static_cast<double>(total);
    if (!candidate) {
      v.streak = 0;
      v.streak_host = CoherenceMessage::kNoSource;
      continue;
    }
    v.streak = v.streak_host == top ? v.streak + 1 : 1;
    v.streak_host = top;
    if (v.streak < config_.windows_to_agree || now_ns - v.here_since_ns < config_.residence_ns ||
        load[top] >= capacity[top])
      continue;
    if (!best || from_top > best->faults) best = PlacementProposal{id, top, version, from_top};
  }
  last_table_ = host_of_vcpu;
  last_version_ = version;
  if (best) out.push_back(*best);
  return out;
}

}  // namespace shoal

// The placement policy (`spec.placement: auto`; docs/placement.md): a vCPU whose remote faults
// keep getting pages from one other host moves to that host, instead of its pages moving to it.
//
// Pure logic, fed by each member for the vCPUs it runs: every remote fault of such a vCPU names
// the host that was using the page (CoherenceMessage::source). At the end of each window the
// model proposes, at most, one move: the vCPU with the most remote faults, if
//   - it had at least min_faults of them in the window (a rate worth a move),
//   - one host supplied at least dominant_share of them (pages written by several hosts are
//     left to move: the vCPU would find them elsewhere too),
//   - the same host was named windows_to_agree windows in a row (hysteresis),
//   - the vCPU has been on this host residence_ns at least (no thrash),
//   - and that host has room (its capacity, as `pod move` checks).
// Any change of the location table (a move anywhere) resets the evidence: it was gathered
// with vCPUs where they no longer are. Host 0 takes a proposal only if the table's version is
// still the one it was made with, so of two proposals made on the same evidence (two vCPUs
// that share pages, each wanting to go to the other) only the first moves.
#pragma once

#include <cstdint>
#include <vector>

#include "memory/coherence.hpp"

namespace shoal {

// The constants and the measurements behind them: docs/placement.md.
struct PlacementConfig {
  uint64_t window_ns = 200'000'000;
  uint64_t min_faults = 64;  // in a window: ~320 remote faults/s
  double dominant_share = 0.8;
  int windows_to_agree = 2;
  uint64_t residence_ns = 500'000'000;
};

struct PlacementProposal {
  uint32_t vcpu = 0;
  NodeId to = 0;
  uint64_t version = 0;  // the location table's when the evidence was gathered
  uint64_t faults = 0;   // the window's remote faults from `to`
};

class PlacementModel {
 public:
  PlacementModel(PlacementConfig config, NodeId self, size_t vcpus, size_t hosts);

  // A remote fault of `vcpu` served with a page host `source` was using.
  void remote_fault(uint32_t vcpu, NodeId source);
  // The end of a window at `now_ns`, with the location table as it is now.
  std::vector<PlacementProposal> end_window(uint64_t now_ns,
                                            const std::vector<NodeId>& host_of_vcpu,
                                            uint64_t version, const std::vector<int>& capacity);
  const PlacementConfig& config() const { return config_; }

 private:
  struct Vcpu {
    std::vector<uint64_t> faults;  // this window's, by source host
    NodeId streak_host = CoherenceMessage::kNoSource;
    int streak = 0;
    uint64_t here_since_ns = 0;
  };
  PlacementConfig config_;
  NodeId self_;
  size_t hosts_;
  std::vector<Vcpu> vcpus_;
  std::vector<NodeId> last_table_;
  uint64_t last_version_ = UINT64_MAX;
};

}  // namespace shoal

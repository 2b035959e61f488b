// Runs the placement model (pod/placement.hpp) on a pod member, for `spec.placement: auto`.
//
// Every member counts the remote faults of the vCPUs it runs (by the faulting thread, which
// CoherentMemory names) and, at the end of each window, sends what the model proposes to
// host 0 (kPlacementProposal). Host 0 carries a proposal out with a `pod move` of its own, if
// the location table has not changed since the proposal's evidence was gathered. One thread
// per member; host 0's also makes the moves (each waits for its vCPU to arrive).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pod/placement.hpp"
#include "shoal/status.hpp"

namespace shoal {

class PlacementRunner {
 public:
  struct Member {
    // The location table and its version.
    std::function<std::pair<std::vector<NodeId>, uint64_t>()> table;
    // (thread id, vCPU) of every vCPU thread on this host.
    std::function<std::vector<std::pair<uint32_t, uint32_t>>()> threads;
    // A member: to host 0.
    std::function<void(const PlacementProposal&)> propose;
    // Host 0: `pod move`.
    std::function<Result<std::string>(uint32_t vcpu, NodeId to)> move;
  };
  PlacementRunner(PlacementConfig config, NodeId self, size_t vcpus, std::vector<int> capacity,
                  Member member);
  PlacementRunner(const PlacementRunner&) = delete;
  PlacementRunner& operator=(const PlacementRunner&) = delete;
  ~PlacementRunner();  // stop()

  void start();
  // After the mover stopped (a move under way then returns at once).
  void stop();
  // CoherentMemoryConfig::on_remote_fault: under the memory's protocol lock, so only counts.
  void remote_fault(uint32_t tid, NodeId source);
  // Host 0: a member's proposal (from a link's reader).
  void proposal(const PlacementProposal& p);
  uint64_t moves() const;

 private:
  void loop();

  const NodeId self_;
  const std::vector<int> capacity_;
  Member member_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  PlacementModel model_;
  std::unordered_map<uint32_t, uint32_t> vcpu_of_tid_;
  std::deque<PlacementProposal> proposals_;  // host 0
  uint64_t moves_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace shoal

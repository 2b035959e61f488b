// A snapshot of a whole pod (`shoal pod snapshot SPEC DIR`; docs/snapshot.md): every member
// writes DIR/<host name>.snap with what it holds (its pages, its part of the page directory,
// its vCPUs, its VM; host 0 also its devices), at one consistent point of the pod.
//
//   `shoal pod snapshot` -> host 0: kPodSnapshot
//   host 0 -> every member (itself too), one step at a time, each answered (kSnapshotStepDone):
//     settle  (first, while running) answer the version of this host's location table;
//             repeated until every member has the version host 0 has: a move's placement is
//             applied everywhere, so every member pauses and saves exactly the vCPUs it runs
//     pause   stop this host's vCPUs (a page or a forwarded exit a vCPU waits for arrives
//             first); answer with the guest addresses of this host's KVM slots
//     settle  answer whether this host's memory is quiet (nothing in flight) and how many
//             coherence messages it sent and received; repeated until every member is quiet,
//             the pod's totals sent and received are equal, and a second round finds the same
//             totals: then no message is on the wire and none can be (no vCPU runs)
//     save    write the file beside its name, as <name>.snap.new (with every member's slots:
//             a vCPU's page walk may touch any)
//     commit  once every member has saved: rename <name>.snap.new over <name>.snap, so a
//             snapshot that fails on one member leaves every member's previous file in place
//     resume  run this host's vCPUs again (skipped with --stop: the pod stays paused)
// A failed step resumes the pod (with --stop too) and reports which host failed and why; a
// save that does not answer within kSaveTimeout stops the pod instead (a member may still be
// reading its pages: they must not change under it). One snapshot at a time; steps run on
// this type's own thread, never on a link's reader (a pause waits on vCPUs).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "memory/coherent_memory.hpp"
#include "pod/pod_mesh.hpp"

namespace shoal {

class PodSnapshotter {
 public:
  // What this member does at each step (PodMember).
  struct Member {
    std::function<Status()> pause;  // this host's vCPUs; returns once they are paused
    std::function<void()> resume;
    std::function<CoherentMemory::Quiet()> quiet;
    std::function<uint64_t()> location_version;
    std::function<std::vector<uint64_t>()> slot_gpas;
    // Writes this member's file in `dir`; returns what it wrote, for the report.
    std::function<Result<std::string>(const std::string& dir, const std::vector<uint64_t>& slots,
                                      uint64_t snapshot_id)>
        save;
    // Puts the file `save` wrote in `dir` in place of the previous one.
    std::function<Status(const std::string& dir)> commit;
    std::function<void(const Error&)> fail;  // stops the pod
  };
  PodSnapshotter(NodeId self, std::vector<std::string> host_names, PodMesh& mesh, Member member);
  PodSnapshotter(const PodSnapshotter&) = delete;
  PodSnapshotter& operator=(const PodSnapshotter&) = delete;
  ~PodSnapshotter();  // stop()

  // Host 0, on a control link's thread: the whole snapshot. Returns what `pod snapshot`
  // prints.
  Result<std::string> snapshot(const std::string& dir, bool stay_paused);
  // Host 0: every member's vCPUs paused (once the location tables agree), or resumed.
  Status pause_all();
  Status resume_all();
  // From a link's reader: an order (queued for this type's thread) or an answer.
  void deliver(NodeId from, net::MessageType type, SnapshotStep step);
  // Ends the thread; a snapshot under way fails (the pod is stopping).
  void stop();

  static constexpr auto kStepTimeout = std::chrono::seconds(30);
  static constexpr auto kSaveTimeout = std::chrono::minutes(30);
  static constexpr int kMaxSettleRounds = 200;
  static constexpr auto kSettleInterval = std::chrono::milliseconds(5);

 private:
  using Phase = SnapshotStep::Phase;
  void loop();
  SnapshotStep perform(const SnapshotStep& order);
  // Host 0: sends `order` to every member and collects the answers (by host), or fails;
  // `timed_out` tells a member that did not answer from one that answered with an error.
  Result<std::vector<SnapshotStep>> round(SnapshotStep order,
                                          std::chrono::seconds timeout = kStepTimeout,
                                          bool* timed_out = nullptr);
  // Settle rounds until every member's location table has `version` and, with `quiet`, the
  // pod's memory is settled; the number of rounds, or why not.
  Result<int> settle(uint64_t version, bool quiet);
  void send(NodeId to, net::MessageType type, const SnapshotStep& step);

  NodeId self_;
  std::vector<std::string> names_;
  PodMesh& mesh_;
  Member member_;

  std::mutex run_mu_;  // host 0: one snapshot at a time

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SnapshotStep> orders_;  // this member's, in arrival order
  bool stop_ = false;
  uint32_t next_id_ = 0;                              // host 0
  std::vector<std::optional<SnapshotStep>> answers_;  // host 0: the current round's, by host
  std::thread thread_;
};

}  // namespace shoal

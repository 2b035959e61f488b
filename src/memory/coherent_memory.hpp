// A pod member's view of guest RAM: the whole guest's mapping on this host, kept coherent with
// the other hosts' mappings by the page protocol of memory/coherence.hpp over userfaultfd.
//
// The mapping is registered for MISSING and WRITEPROTECT faults. A read fault brings a copy
// mapped write-protected (UFFDIO_COPY_MODE_WP); a write fault, or a write to such a copy (a WP
// fault), takes exclusive ownership. Giving a page up write-protects it first (TLB and KVM
// mappings are flushed by the ioctl), reads it out, then moves it back into the zero pool or
// zaps it. Dormant pages have no owner: the first touch on any host is served from that host's
// zero pool, and no page crosses the wire. A first touch of a dormant page this host is home
// for needs no message at all: the same DormantServer as on a single host serves it, with its
// adaptive batches and prefetch, gated to the pages this host homes and nobody holds.
//
// One thread reads faults; messages from other hosts are handled on the thread that delivers
// them (the link's reader). Both take one lock around the home directory and the requester.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "memory/coherence.hpp"
#include "memory/dormant_server.hpp"
#include "memory/page_groups.hpp"
#include "memory/page_holds.hpp"
#include "memory/userfaultfd.hpp"
#include "memory/zero_pool.hpp"
#include "shoal/size.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

// Carries protocol messages to other hosts (never to this one). Called from the coherence
// thread only; a failure is reported and the pod stops.
class CoherenceTransport {
 public:
  virtual ~CoherenceTransport() = default;
  virtual Status send(const CoherenceMessage& m) = 0;
};

inline constexpr uint64_t kHomePieceBytes = 2ull << 20;  // homes are assigned in 2 MiB pieces

struct CoherentMemoryConfig {
  NodeId self = 0;
  std::vector<NodeId> home_of_piece;  // per 2 MiB piece of the mapping
  uint64_t pool_bytes = 64ull << 20;
  // Host memory the guest pages this host holds and its pool may take (0: no bound). First
  // touches served here and pages that arrive from other hosts both count.
  uint64_t budget_bytes = 0;
  // A page that just arrived is kept at least this long before a recall or invalidation takes
  // it away, so the vCPU that faulted on it gets to use it (no ping-pong livelock); longer
  // while that vCPU goes on faulting, up to max_hold_ns (memory/page_holds.hpp).
  uint64_t hold_ns = 200'000;
  uint64_t max_hold_ns = 16 * 200'000;
  // How long a page taken from this host still brings the pages taken with it when it is
  // faulted on again (memory/page_groups.hpp). 0: 64 x hold_ns, at least 10 ms, long enough
  // to span a turn of two hosts taking a walk's tables from each other, holds included.
  uint64_t group_window_ns = 0;
  // The pod's size, and how long each host in turn has the first place when two hosts'
  // waits keep pages from each other (memory/page_holds.hpp, wait_outranks; 0: host 0
  // always first).
  NodeId hosts = 1;
  uint64_t priority_turn_ns = 0;
  // A fault of thread `tid` (a vCPU's) was served with a page another host was using:
  // `source` (CoherenceMessage::source). Called under the protocol lock: keep it short.
  std::function<void(uint32_t tid, NodeId source)> on_remote_fault;
};

struct CoherentMemoryStats {
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> wp_faults{0};
  std::atomic<uint64_t> local_dormant_pages{0};   // served from the pool with no message
  std::atomic<uint64_t> remote_dormant_pages{0};  // granted by another home as zero
  std::atomic<uint64_t> requests_sent{0};
  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> messages_received{0};
  std::atomic<uint64_t> page_bytes_sent{0};  // page contents on the wire, out
  std::atomic<uint64_t> page_bytes_received{0};
  std::atomic<uint64_t> pages_given_up{0};
  std::atomic<uint64_t> held_back{0};  // times a recall/invalidation waited for a hold (a hold
                                       // that stretched counts again)
  std::atomic<uint64_t> holds_ended_halted{0};   // held pages let go: their vCPU slept in HLT
  std::atomic<uint64_t> prefetches_sent{0};      // read-ahead of remotely homed first touches
  std::atomic<uint64_t> prefetches_declined{0};  // of those, pages that were not dormant
  std::atomic<uint64_t> group_pages_asked{0};    // asked for with a page taken from here
                                                 // together with them (memory/page_groups.hpp)
};

// What one member holds of the pod's guest memory, as a pod snapshot stores it beside the
// pages themselves (pod/pod_snapshot.hpp, docs/snapshot.md).
struct CoherenceSnapshot {
  std::vector<uint64_t> shared;              // pages mapped here read-only; other mapped
                                             // pages are held exclusively
  std::vector<HomeDirectory::Record> homes;  // every settled entry of the pages homed here
  std::vector<uint64_t> home_copies;         // pages whose shared data the home keeps
};

class SnapshotFile;

class CoherentMemory {
 public:
  static Result<std::unique_ptr<CoherentMemory>> create(uint8_t* base, uint64_t bytes,
                                                        const CoherentMemoryConfig& config,
                                                        CoherenceTransport& transport,
                                                        std::function<void(const Error&)> on_fatal);
  CoherentMemory(const CoherentMemory&) = delete;
  CoherentMemory& operator=(const CoherentMemory&) = delete;
  ~CoherentMemory();

  // A message from another host; any thread.
  void deliver(CoherenceMessage m);
  // The guest gave [offset, offset + bytes) of its RAM back: each page's home takes every
  // copy away (this host's, the home's, any other's) and makes it dormant again, so the
  // memory returns to the hosts' pools and the next touch is a first touch. Returns once
  // every home has acked (the range reads as zero, as on a single host), or fails after
  // kDiscardWaitNs. Never waits while holding the protocol lock; never call it on a link's
  // reader, whose link may carry the acks.
  Status discard(uint64_t offset, uint64_t bytes);
  static constexpr uint64_t kDiscardWaitNs = 10'000'000'000;
  // Stops the coherence thread and unregisters the mapping: a thread still waiting on a fault
  // is woken and the kernel serves it (the pod is going down; nothing of it is used again).
  void stop();

  NodeId home_of(uint64_t page) const {
    return config_.home_of_piece[page * kPageBytes / kHomePieceBytes];
  }
  const CoherentMemoryStats& stats() const { return stats_; }
  // Microseconds from a fault to its page being mapped, for faults that needed a message.
  struct Latencies {
    std::vector<double> read_us, write_us;
  };
  Latencies take_latencies();
  std::string stats_report() const;
  // Pages this host has mapped (exclusive or shared copies).
  uint64_t mapped_pages() const { return directory_->present_pages(); }
  // Nanoseconds the oldest fault still unserved has waited: one waiting for a page from
  // another host, or one the fault thread is stuck serving here (0: none). The pod's
  // watchdog reads it: a vCPU waiting on guest memory waits in the kernel, unkillable.
  uint64_t stuck_ns();

  // Pod snapshots (memory/coherent_memory_snapshot.cc). Quiet: nothing in flight here (no
  // request, transaction, held or queued message, discard). With every vCPU of the pod
  // paused, the pod is settled once every member is quiet and the pod's messages received
  // equal those sent, the same in two rounds (pod/pod_snapshot.hpp).
  struct Quiet {
    bool quiet = false;
    uint64_t sent = 0, received = 0;
  };
  Quiet quiet();
  // Only while settled: this member's state, and in `pages` (in order) every page whose bytes
  // the snapshot stores: those mapped here and the home copies; saved_page() reads each.
  Result<CoherenceSnapshot> save(std::vector<uint64_t>& pages);
  const uint8_t* saved_page(uint64_t page) const;
  // A fresh member, before any vCPU of the pod runs: maps this host's pages from `file`,
  // each with the access it had, and restores the home entries and copies (eagerly: a
  // member's pages are all in before the pod resumes). `hosts`: the pod's size.
  Status restore(const CoherenceSnapshot& s, const SnapshotFile& file, size_t hosts);

  static constexpr uint64_t kPageBytes = kPageSize;

 private:
  class UffdPages;
  class RemoteHome;
  CoherentMemory(uint8_t* base, uint64_t bytes, const CoherentMemoryConfig& config,
                 CoherenceTransport& transport, std::function<void(const Error&)> on_fatal);
  void loop();
  void on_fault(uint64_t page, Access access);
  void read_ahead(uint64_t page, NodeId home);
  uint64_t room_to_ask_ahead() const;
  // Asks for the pages taken from this host together with `page` (memory/page_groups.hpp).
  void ask_for_group(uint64_t page);
  bool may_serve_dormant(uint64_t page) const;
  // Host pages this member populates: guest pages it maps plus its pool (the budget's count).
  uint64_t held_pages() const;
  bool budget_allows_one_more();
  void run_queue();
  void release_held();
  void fail(const Error& e);
  uint64_t addr(uint64_t page) const {
    return reinterpret_cast<uint64_t>(base_) + page * kPageBytes;
  }

  uint8_t* base_;
  uint64_t pages_;
  CoherentMemoryConfig config_;
  CoherenceTransport& transport_;
  std::function<void(const Error&)> on_fatal_;
  Userfaultfd uffd_;
  std::unique_ptr<ZeroPool> pool_;
  std::unique_ptr<UffdPages> local_;
  // The page sources (memory/page_source.hpp): first touches of this host's own dormant
  // pages, and everything else.
  std::unique_ptr<DormantServer> dormant_;
  std::unique_ptr<RemoteHome> remote_;
  std::optional<PageDirectory> directory_;  // what this host holds of every page
  std::optional<HomeDirectory> home_;       // who holds the pages this host is home for
  std::unique_ptr<PageRequester> requester_;

  UniqueFd held_fd_, stop_fd_;  // eventfds: a message was held (the timer changed); stop

  // The protocol state; taken by the fault thread and by the links' reader threads.
  std::mutex proto_mu_;
  std::deque<CoherenceMessage> work_;
  std::multimap<uint64_t, CoherenceMessage> held_;  // by the time its hold ends
  PageHolds holds_;                                 // which pages that just arrived stay a while
  PageGroups groups_;                               // which pages were taken from here together
  // Pages asked for with a group, by the thread whose fault asked: their holds are its.
  std::unordered_map<uint64_t, uint32_t> group_tids_;
  struct Waiting {
    uint64_t since_ns;
    Access access;
    uint32_t tid;  // the faulting thread (0 where the kernel does not say)
  };
  uint32_t fault_tid_ = 0;  // under proto_mu_: the thread of the fault being served
  std::unordered_map<uint64_t, Waiting> waiting_;  // remote faults in flight
  std::atomic<bool> failed_{false};
  uint64_t discard_acks_pending_ = 0;  // under proto_mu_; acks of this host's waiting discards
  std::condition_variable discard_cv_;
  std::atomic<uint64_t> busy_since_ns_{0};  // the fault thread is serving a fault (0: idle)
  // Read-ahead (under proto_mu_): the current run of first touches homed on run_home_.
  static constexpr uint64_t kMaxReadAhead = 64;
  NodeId run_home_ = 0;
  uint64_t run_start_ = 0, run_next_ = 0, window_ = 0;

  std::mutex latency_mu_;
  Latencies latencies_;
  CoherentMemoryStats stats_;
  std::thread thread_;
  bool stopped_ = false;
  bool closed_ = false;  // under proto_mu_: the pool and the fd are gone
};

}  // namespace shoal

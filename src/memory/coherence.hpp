// The pod's page coherence protocol: single writer / multiple readers, with a home host per
// page that keeps its directory entry and serializes everything about that page.
//
// Pure logic: each side takes a message (or a local fault) and returns the messages to send.
// The transport carries them (FIFO per pair of hosts); LocalPages does what a message means
// for this host's copy of a page (over userfaultfd: install with MOVE/COPY, write-protect,
// read out, zap). Tests drive both sides through a fake transport over every interleaving.
//
// Home directory states and what a request does there:
//   Uncached  (dormant: nobody has it)  read/write -> grant with no data: the requester serves
//             it from its own zero pool; no page crosses the wire
//   Shared{S} (home holds a valid copy) read  -> grant with the home's copy, S += R
//                                       write -> invalidate S - {R}, wait for every ack, grant
//                                                (with data unless R was a sharer)
//   Exclusive{O}                        read  -> recall from O (O downgrades to shared and
//                                                returns the data), grant R; Shared{O, R}
//                                       write -> recall from O (O gives it up), grant R
// A discard (the guest gave the page back) takes every copy away, the home's own included:
// Shared{S} invalidates all of S, Exclusive{O} recalls from O; then the page is Uncached
// (dormant) again, its next touch anywhere is a first touch from a zero pool, and the
// discarding host gets an ack.
// A request that arrives while the page has a transaction in flight waits in the page's
// queue, so transactions on one page never interleave.
// A prefetch (a requester reading ahead of a sequential run of first touches) asks for a page
// only if it is dormant: Uncached with nothing in flight -> an exclusive zero grant, as a
// request would get; anything else -> a decline, and the page is left alone (a prefetch never
// takes a page from a host using it). A requester whose vCPU faults on a page while its
// prefetch is out waits for the answer and, on a decline, asks again with a request.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "memory/page_directory.hpp"
#include "memory/page_source.hpp"
#include "memory/sparse_array.hpp"
#include "shoal/status.hpp"

namespace shoal {

using NodeId = uint16_t;
using PageBytes = std::vector<uint8_t>;

struct CoherenceMessage {
  enum class Type : uint8_t {
    kRequest,        // requester -> home: access wanted
    kGrant,          // home -> requester: access granted (+ data, or zero, or keep yours)
    kInvalidate,     // home -> sharer: drop your read-only copy
    kInvalidateAck,  // sharer -> home
    kRecall,         // home -> owner: write-protect, return the data, downgrade or give up
    kRecallAck,      // owner -> home, with the data
    kDiscard,        // any host -> home: the guest gave the page back
    kDiscardAck,     // home -> that host: every copy is gone, the page is dormant
    kPrefetch,       // requester -> home: the page, exclusive, only if it is dormant
    kDecline,        // home -> requester: a prefetched page is not dormant
  };
  enum class Payload : uint8_t { kNone, kZero, kData };

  Type type;
  uint64_t page;
  NodeId from;
  NodeId to;
  Access access = Access::kNone;  // kRequest/kGrant: the access; kRecall: kRead = downgrade
  Payload payload = Payload::kNone;
  PageBytes data;  // when payload == kData (4096 bytes)
  // kGrant: the host that was using the page and gave it up or shared it for this grant (the
  // recalled owner, or another sharer of a page written now; the home when only its copy
  // was involved); kNoSource for a dormant page. What the placement policy counts.
  NodeId source = kNoSource;
  // kRecall / kInvalidate: the host the page is taken for (the requester of the transaction;
  // for a discard the discarding host). The holder's holds yield to a lower-numbered taker
  // (memory/page_holds.hpp). kNoSource: not known.
  NodeId taker = kNoSource;
  static constexpr NodeId kNoSource = 0xffff;
};

// Whether the page's home handles `t` (else the host it is sent to, as a requester).
inline bool is_for_home(CoherenceMessage::Type t) {
  using T = CoherenceMessage::Type;
  return t == T::kRequest || t == T::kInvalidateAck || t == T::kRecallAck || t == T::kDiscard ||
         t == T::kPrefetch;
}

// This host's copies of pages, as the protocol needs them.
class LocalPages {
 public:
  virtual ~LocalPages() = default;
  // Maps the page with `access`: from `data`, or zero-filled (from the zero pool), or keeping
  // the copy already mapped (an upgrade of a shared copy).
  virtual void install(uint64_t page, Access access, CoherenceMessage::Payload payload,
                       const PageBytes& data) = 0;
  // Write-protects the page (so no write is lost while it is read out) and returns it; an
  // empty result means the page is all zeros.
  virtual PageBytes write_protect_and_read(uint64_t page) = 0;
  // Removes the page (zap, or move it back into the pool).
  virtual void drop(uint64_t page) = 0;
  // The contents of a read-only copy this host holds (empty: all zeros).
  virtual PageBytes read(uint64_t page) = 0;
};

// A page's sharers are one bit each in a 32-bit mask, so a pod has at most this many hosts.
inline constexpr size_t kMaxPodHosts = 32;

// The home's directory entries: 8 packed bytes per page in a sparse array (nothing for pages
// nobody homed here touched), plus side tables only for pages with a transaction in flight
// and for shared pages whose data the home must hold without having them mapped itself.
class HomeDirectory {
 public:
  // `pages`: the whole guest. `local`: this host's own copies; when this host is a sharer of
  // a page it homes, later readers are served from that mapped copy, not from a second one.
  static Result<HomeDirectory> create(NodeId self, uint64_t pages, LocalPages& local);
  HomeDirectory(HomeDirectory&&) noexcept = default;
  HomeDirectory& operator=(HomeDirectory&&) noexcept = default;

  std::vector<CoherenceMessage> on_message(const CoherenceMessage& m);

  enum class State : uint8_t { kUncached, kShared, kExclusive };
  // One page's entry, assembled from the packed word and the side tables (tests, diagnostics).
  struct Entry {
    State state = State::kUncached;
    std::set<NodeId> sharers;            // kShared
    NodeId owner = 0;                    // kExclusive
    bool self_copy = false;              // kShared: the data is this host's mapped copy
    std::optional<PageBytes> home_copy;  // kShared: the data the home holds (none: zeros)
    bool busy = false;
    NodeId requester = 0;
    Access wanted = Access::kNone;
    size_t acks_pending = 0;
    std::deque<CoherenceMessage> queue;
  };
  Entry entry(uint64_t page) const;
  State state(uint64_t page) const;  // entry(page).state, without assembling the rest
  // The home's own first touch of a dormant page, without a message: when nobody has the
  // page and no transaction is on it, `r` becomes its exclusive owner (true). Lets the home
  // serve a whole batch of its own dormant pages from its zero pool in one go.
  bool claim_uncached(uint64_t page, NodeId r);
  // Whether claim_uncached(page) would succeed now.
  bool can_claim(uint64_t page) const;
  // A grant this home sent to itself was installed: its mapped copy now holds the page's
  // shared data, and the home stops keeping a copy of its own.
  void self_copy_installed(uint64_t page);
  // Memory the side tables hold, for the pod's metadata figures.
  size_t transactions_in_flight() const { return transactions_.size(); }
  size_t home_copies() const { return home_copies_.size(); }

  // A settled entry (no transaction on it), as a pod snapshot stores it.
  struct Record {
    uint64_t page = 0;
    State state = State::kUncached;
    NodeId owner = 0;      // kExclusive
    uint32_t sharers = 0;  // kShared: one bit per host
    bool self_copy = false;
  };
  // Every entry that is not uncached, in page order. Only with no transaction in flight.
  std::vector<Record> records() const;
  // Nothing recorded yet: no entry, transaction or home copy (a fresh directory).
  bool empty() const { return entries_ == 0 && transactions_.empty() && home_copies_.empty(); }
  // Pages whose shared data the home keeps (unmapped, or beside its mapped copy), in order.
  std::vector<uint64_t> home_copy_pages() const;
  const PageBytes* home_copy(uint64_t page) const;
  // Restoring a snapshot into a fresh directory; `hosts`: the pod's size. Each record is
  // checked (state, owner and sharers within the pod, self_copy only for a shared page this
  // host shares) and names what is wrong.
  Status restore(const Record& r, size_t hosts);
  // An all-zero copy is not kept (zeros need none).
  void restore_home_copy(uint64_t page, PageBytes data);

 private:
  struct Transaction {
    NodeId requester = 0;
    Access wanted = Access::kNone;
    bool discard = false;  // ends with the page dormant, not with a grant
    size_t acks_pending = 0;
    // What the owner sent back, or this host's shared copy read before it was invalidated
    // (empty: zeros).
    std::optional<PageBytes> recalled;
    std::deque<CoherenceMessage> queue;
  };
  HomeDirectory() = default;
  // Begins a request's transaction; true when it can be granted at once (no acks to wait for).
  bool start(uint64_t page, Transaction& t, const CoherenceMessage& request,
             std::vector<CoherenceMessage>& out);
  // Grants the transaction in flight, then runs queued requests until one has to wait.
  void finish(uint64_t page, std::vector<CoherenceMessage>& out);
  // Sends the grant for `t` and sets the page's entry to what it grants.
  void grant(uint64_t page, Transaction& t, std::vector<CoherenceMessage>& out);
  // Ends `t`: a grant, or for a discard the page back to dormant.
  void complete(uint64_t page, Transaction& t, std::vector<CoherenceMessage>& out);

  // Every write of a word goes here, keeping entries_ in step.
  void set_word(uint64_t page, uint64_t w) {
    entries_ += (w != 0 ? 1 : 0) - (words_[page] != 0 ? 1 : 0);
    words_[page] = w;
  }

  NodeId self_ = 0;
  LocalPages* local_ = nullptr;
  SparseArray<uint64_t> words_;  // packed: see coherence.cc
  uint64_t entries_ = 0;         // words that are not zero (records() checks it found all)
  std::unordered_map<uint64_t, Transaction> transactions_;
  std::unordered_map<uint64_t, PageBytes> home_copies_;  // never all-zero pages
};

// A host's side of the protocol: what it holds of each page lives in its PageDirectory
// (dormant = nothing, shared = read copy, present = exclusive); a side table holds only the
// pages with a request in flight.
class PageRequester {
 public:
  PageRequester(NodeId self, PageDirectory& directory, LocalPages& pages)
      : self_(self), directory_(directory), pages_(pages) {}

  // A local vCPU faulted on `page` wanting `access`; `home` is the page's home host. Returns
  // the request to send, or nothing when this host already has (or has asked for) enough.
  std::vector<CoherenceMessage> on_fault(uint64_t page, Access access, NodeId home);
  // Reading ahead: asks for `page` if this host has nothing of it and nothing in flight.
  std::vector<CoherenceMessage> prefetch(uint64_t page, NodeId home);
  std::vector<CoherenceMessage> on_message(const CoherenceMessage& m);
  Access access(uint64_t page) const;
  bool pending(uint64_t page) const { return in_flight_.count(page) != 0; }
  // The home granted this host a dormant page directly (HomeDirectory::claim_uncached).
  void granted_locally(uint64_t page) { set_access(page, Access::kWrite); }
  // The whole per-page state, for tests and diagnostics.
  struct View {
    Access have = Access::kNone;
    Access asked = Access::kNone;
    bool upgrade_after = false;
    bool prefetch = false;
    Access faulted = Access::kNone;
  };
  View view(uint64_t page) const;
  size_t requests_in_flight() const { return in_flight_.size(); }

 private:
  struct InFlight {
    Access asked = Access::kNone;
    bool upgrade_after = false;      // a write fault came while a read was in flight
    bool prefetch = false;           // asked by a kPrefetch, which may be declined
    Access faulted = Access::kNone;  // prefetch: a local fault waits for the answer
  };
  void set_access(uint64_t page, Access a);

  NodeId self_;
  PageDirectory& directory_;
  LocalPages& pages_;
  std::unordered_map<uint64_t, InFlight> in_flight_;
};

}  // namespace shoal

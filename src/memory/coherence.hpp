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
// A request that arrives while the page has a transaction in flight waits in the page's
// queue, so transactions on one page never interleave.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace shoal {

using NodeId = uint16_t;
using PageBytes = std::vector<uint8_t>;

enum class Access : uint8_t { kNone = 0, kRead = 1, kWrite = 2 };

struct CoherenceMessage {
  enum class Type : uint8_t {
    kRequest,        // requester -> home: access wanted
    kGrant,          // home -> requester: access granted (+ data, or zero, or keep yours)
    kInvalidate,     // home -> sharer: drop your read-only copy
    kInvalidateAck,  // sharer -> home
    kRecall,         // home -> owner: write-protect, return the data, downgrade or give up
    kRecallAck,      // owner -> home, with the data
  };
  enum class Payload : uint8_t { kNone, kZero, kData };

  Type type;
  uint64_t page;
  NodeId from;
  NodeId to;
  Access access = Access::kNone;  // kRequest/kGrant: the access; kRecall: kRead = downgrade
  Payload payload = Payload::kNone;
  PageBytes data;  // when payload == kData (4096 bytes)
};

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
};

class HomeDirectory {
 public:
  explicit HomeDirectory(NodeId self) : self_(self) {}
  std::vector<CoherenceMessage> on_message(const CoherenceMessage& m);

  enum class State : uint8_t { kUncached, kShared, kExclusive };
  struct Entry {
    State state = State::kUncached;
    std::set<NodeId> sharers;            // kShared
    NodeId owner = 0;                    // kExclusive
    std::optional<PageBytes> home_copy;  // kShared: the data (nullopt: still all zeros)
    std::optional<PageBytes> recalled;   // during a recall: what the owner sent back
    // The transaction in flight, and what waits behind it.
    bool busy = false;
    NodeId requester = 0;
    Access wanted = Access::kNone;
    size_t acks_pending = 0;
    std::deque<CoherenceMessage> queue;
  };
  const Entry* entry(uint64_t page) const;
  // The home's own first touch of a dormant page, without a message: when nobody has the
  // page and no transaction is on it, `r` becomes its exclusive owner (true). Lets the home
  // serve a whole batch of its own dormant pages from its zero pool in one go.
  bool claim_uncached(uint64_t page, NodeId r);

 private:
  void start(Entry& e, const CoherenceMessage& request, std::vector<CoherenceMessage>& out);
  // Grants the transaction's request, updates the entry, then starts queued requests.
  void finish(Entry& e, uint64_t page, std::vector<CoherenceMessage>& out);

  NodeId self_;
  std::map<uint64_t, Entry> pages_;
};

class PageRequester {
 public:
  PageRequester(NodeId self, LocalPages& pages) : self_(self), pages_(pages) {}

  // A local vCPU faulted on `page` wanting `access`; `home` is the page's home host. Returns
  // the request to send, or nothing when this host already has (or has asked for) enough.
  std::vector<CoherenceMessage> on_fault(uint64_t page, Access access, NodeId home);
  std::vector<CoherenceMessage> on_message(const CoherenceMessage& m);
  Access access(uint64_t page) const;
  bool pending(uint64_t page) const;
  // The home granted this host a dormant page directly (HomeDirectory::claim_uncached).
  void granted_locally(uint64_t page) { pages_state_[page].have = Access::kWrite; }
  // The whole per-page state, for tests and diagnostics.
  struct View {
    Access have = Access::kNone;
    Access asked = Access::kNone;
    bool upgrade_after = false;
  };
  View view(uint64_t page) const;

 private:
  struct Entry {
    Access have = Access::kNone;
    Access asked = Access::kNone;  // request in flight
    bool upgrade_after = false;    // a write fault came while a read was in flight
    NodeId home = 0;
  };
  NodeId self_;
  LocalPages& pages_;
  std::map<uint64_t, Entry> pages_state_;
};

}  // namespace shoal

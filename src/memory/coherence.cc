#include "memory/coherence.hpp"

#include <algorithm>
#include <string>

#include "shoal/size.hpp"

namespace shoal {

using Msg = CoherenceMessage;
using Type = CoherenceMessage::Type;

// A page's packed directory word. All-zero is an uncached page nobody has touched.
//   bits  0..31  sharers (one bit per host)     bits 48..49  State
//   bits 32..47  owner (kExclusive)             bit  50      self_copy (see Entry)
namespace {
using State = HomeDirectory::State;
constexpr uint64_t kSelfCopy = 1ull << 50;
uint32_t sharers_of(uint64_t w) {
  return static_cast<uint32_t>(w);
}
NodeId owner_of(uint64_t w) {
  return static_cast<NodeId>(w >> 32);
}
State state_of(uint64_t w) {
  return static_cast<State>((w >> 48) & 3);
}
bool self_copy_of(uint64_t w) {
  return (w & kSelfCopy) != 0;
}
uint64_t pack(State s, NodeId owner, uint32_t sharers, bool self_copy) {
  return sharers | (uint64_t{owner} << 32) | (uint64_t{static_cast<uint8_t>(s)} << 48) |
         (self_copy ? kSelfCopy : 0);
}
uint32_t bit(NodeId n) {
  return 1u << n;
}
}  // namespace

Result<HomeDirectory> HomeDirectory::create(NodeId self, uint64_t pages, LocalPages& local) {
  if (self >= kMaxPodHosts)
    return Error("home directory: host " + std::to_string(self) + " of at most " +
                 std::to_string(kMaxPodHosts));
  auto words = SparseArray<uint64_t>::create(pages, "home directory");
  if (!words) return words.error();
  HomeDirectory d;
  d.self_ = self;
  d.local_ = &local;
  d.words_ = std::move(*words);
  return d;
}

HomeDirectory::Entry HomeDirectory::entry(uint64_t page) const {
  Entry e;
  const uint64_t w = words_[page];
  e.state = state_of(w);
  e.owner = owner_of(w);
  e.self_copy = self_copy_of(w);
  for (NodeId n = 0; n < kMaxPodHosts; ++n)
    if (sharers_of(w) & bit(n)) e.sharers.insert(n);
  if (auto c = home_copies_.find(page); c != home_copies_.end()) e.home_copy = c->second;
  if (auto t = transactions_.find(page); t != transactions_.end()) {
    e.busy = true;
    e.requester = t->second.requester;
    e.wanted = t->second.wanted;
    e.acks_pending = t->second.acks_pending;
    e.queue = t->second.queue;
  }
  return e;
}

HomeDirectory::State HomeDirectory::state(uint64_t page) const {
  return state_of(words_[page]);
}

bool HomeDirectory::can_claim(uint64_t page) const {
  return state_of(words_[page]) == State::kUncached && !transactions_.count(page);
}

bool HomeDirectory::claim_uncached(uint64_t page, NodeId r) {
  if (!can_claim(page)) return false;
  set_word(page, pack(State::kExclusive, r, 0, false));
  return true;
}

void HomeDirectory::self_copy_installed(uint64_t page) {
  // Not while a transaction is on the page: it may have started (a write, say) while this
  // grant was on its way, without reading this host's copy, and its invalidation may be about
  // to drop that copy. The home keeps its own copy then.
  if (transactions_.count(page)) return;
  const uint64_t w = words_[page];
  if (state_of(w) != State::kShared || !(sharers_of(w) & bit(self_))) return;
  set_word(page, w | kSelfCopy);
  home_copies_.erase(page);
}

std::vector<HomeDirectory::Record> HomeDirectory::records() const {
  std::vector<Record> out;
  auto walk = [&](bool skip_unbacked) {
    out.clear();
    words_.for_each_backed(
        [&](uint64_t first, uint64_t end) {
          for (uint64_t p = first; p < end; ++p)
            if (const uint64_t w = words_[p]; w != 0)
              out.push_back({p, state_of(w), owner_of(w), sharers_of(w), self_copy_of(w)});
        },
        skip_unbacked);
  };
  walk(true);
  if (out.size() < entries_) walk(false);  // a swapped-out piece looked unbacked
  return out;
}

std::vector<uint64_t> HomeDirectory::home_copy_pages() const {
  std::vector<uint64_t> pages;
  pages.reserve(home_copies_.size());
  for (const auto& [page, data] : home_copies_) pages.push_back(page);
  std::sort(pages.begin(), pages.end());
  return pages;
}

const PageBytes* HomeDirectory::home_copy(uint64_t page) const {
  auto it = home_copies_.find(page);
  return it == home_copies_.end() ? nullptr : &it->second;
}

Status HomeDirectory::restore(const Record& r, size_t hosts) {
  const std::string what = "home entry of page " + std::to_string(r.page);
  if (r.page >= words_.size()) return Error(what + ": outside guest RAM");
  if (words_[r.page] != 0) return Error(what + ": given twice");
  const uint32_t pod_mask = hosts >= 32 ? ~0u : (1u << hosts) - 1;
  switch (r.state) {
    case State::kExclusive:
      if (r.owner >= hosts)
        return Error(what + ": owner " + std::to_string(r.owner) + " of " + std::to_string(hosts) +
                     " hosts");
      if (r.sharers != 0 || r.self_copy) return Error(what + ": exclusive with sharers");
      break;
    case State::kShared:
      if (r.sharers == 0 || (r.sharers & ~pod_mask) != 0)
        return Error(what + ": sharers " + format_hex(r.sharers) + " not in the pod");
      if (r.owner != 0) return Error(what + ": shared with an owner");
      if (r.self_copy && (r.sharers & bit(self_)) == 0)
        return Error(what + ": a self copy on a host that does not share it");
      break;
    default:
      return Error(what + ": state " + std::to_string(static_cast<int>(r.state)));
  }
  set_word(r.page, pack(r.state, r.owner, r.sharers, r.self_copy));
  return {};
}

void HomeDirectory::restore_home_copy(uint64_t page, PageBytes data) {
  if (std::any_of(data.begin(), data.end(), [](uint8_t b) { return b != 0; }))
    home_copies_[page] = std::move(data);
}

std::vector<Msg> HomeDirectory::on_message(const Msg& m) {
  std::vector<Msg> out;
  if (m.page >= words_.size() || m.from >= kMaxPodHosts) return out;  // checked by the wire
  auto t = transactions_.find(m.page);
  switch (m.type) {
    case Type::kRequest:
    case Type::kDiscard:
      if (t != transactions_.end())
        t->second.queue.push_back(m);  // one transaction per page at a time
      else if (start(m.page, transactions_[m.page], m, out))
        finish(m.page, out);
      break;
    case Type::kPrefetch:
      // Only a dormant page with nothing in flight; never queued, never takes a page away.
      if (t != transactions_.end() || state_of(words_[m.page]) != State::kUncached) {
        out.push_back(Msg{Type::kDecline, m.page, self_, m.from});
      } else {
        set_word(m.page, pack(State::kExclusive, m.from, 0, false));
        out.push_back(
            Msg{Type::kGrant, m.page, self_, m.from, Access::kWrite, Msg::Payload::kZero});
      }
      break;
    case Type::kInvalidateAck:
      if (t != transactions_.end() && t->second.acks_pending > 0 && --t->second.acks_pending == 0)
        finish(m.page, out);
      break;
    case Type::kRecallAck:
      if (t == transactions_.end() || state_of(words_[m.page]) != State::kExclusive) break;
      t->second.recalled = m.data;
      finish(m.page, out);
      break;
    default:
      break;  // grants, invalidates and recalls go to requesters, not here
  }
  return out;
}

namespace {

// A recall or invalidation names the host the page is taken for.
Msg taken_for(Msg m, const auto& transaction) {
  m.taker = transaction.requester;
  return m;
}

}  // namespace

bool HomeDirectory::start(uint64_t page, Transaction& t, const Msg& req, std::vector<Msg>& out) {
  t.requester = req.from;
  t.wanted = req.access;
  t.discard = req.type == Type::kDiscard;
  t.acks_pending = 0;
  t.recalled.reset();
  const uint64_t w = words_[page];
  if (t.discard) {
    // Every copy goes, the discarding host's and this host's included; the data does not
    // matter (a recall's ack carries it anyway, and it is dropped).
    if (state_of(w) == State::kShared) {
      for (NodeId s = 0; s < kMaxPodHosts; ++s)
        if (sharers_of(w) & bit(s)) {
          out.push_back(taken_for(Msg{Type::kInvalidate, page, self_, s}, t));
          ++t.acks_pending;
        }
      return t.acks_pending == 0;
    }
    if (state_of(w) == State::kExclusive) {
      out.push_back(taken_for(Msg{Type::kRecall, page, self_, owner_of(w), Access::kNone}, t));
      return false;
    }
    return true;  // dormant already
  }
  if (state_of(w) == State::kShared && req.access == Access::kWrite) {
    // This host's copy goes with the invalidations: take the data the writer gets now.
    if (self_copy_of(w) && !(sharers_of(w) & bit(req.from))) t.recalled = local_->read(page);
    for (NodeId s = 0; s < kMaxPodHosts; ++s)
      if ((sharers_of(w) & bit(s)) && s != req.from) {
        out.push_back(taken_for(Msg{Type::kInvalidate, page, self_, s}, t));
        ++t.acks_pending;
      }
    return t.acks_pending == 0;  // else finish() on the last ack
  }
  if (state_of(w) == State::kExclusive && owner_of(w) != req.from) {
    out.push_back(taken_for(Msg{Type::kRecall, page, self_, owner_of(w), req.access}, t));
    return false;  // finish() on the recall ack
  }
  return true;
}

void HomeDirectory::finish(uint64_t page, std::vector<Msg>& out) {
  auto it = transactions_.find(page);
  Transaction& t = it->second;
  complete(page, t, out);
  // Serve what queued up behind this transaction, in order, until one has to wait.
  while (!t.queue.empty()) {
    Msg next = std::move(t.queue.front());
    t.queue.pop_front();
    if (!start(page, t, next, out)) return;
    complete(page, t, out);
  }
  transactions_.erase(it);
}

void HomeDirectory::complete(uint64_t page, Transaction& t, std::vector<Msg>& out) {
  if (!t.discard) return grant(page, t, out);
  set_word(page, pack(State::kUncached, 0, 0, false));
  home_copies_.erase(page);
  out.push_back(Msg{Type::kDiscardAck, page, self_, t.requester});
}

void HomeDirectory::grant(uint64_t page, Transaction& t, std::vector<Msg>& out) {
  const NodeId r = t.requester;
  const uint64_t w = words_[page];
  Msg g{Type::kGrant, page, self_, r, t.wanted};
  uint32_t sharers = 0;  // besides r, when the page ends up shared
  bool self_copy = false;
  std::optional<PageBytes> keep;  // the data the home holds when the page ends up shared
  switch (state_of(w)) {
    case State::kUncached:
      // Dormant: nobody has a copy; the requester serves it from its own zero pool, and no
      // page crosses the wire.
      g.payload = Msg::Payload::kZero;
      break;
    case State::kShared:
      sharers = sharers_of(w);
      self_copy = self_copy_of(w);
      g.source = self_;
      if (t.wanted == Access::kWrite)  // the sharers that lost their copies to this write
        for (NodeId s = 0; s < kMaxPodHosts; ++s)
          if ((sharers & bit(s)) && s != r) {
            g.source = s;
            break;
          }
      if (auto c = home_copies_.find(page); c != home_copies_.end()) keep = std::move(c->second);
      if (sharers & bit(r)) {
        g.payload = Msg::Payload::kNone;  // an upgrade: keep the copy you have
      } else {
        g.data = t.recalled  ? *t.recalled
                 : self_copy ? local_->read(page)
                             : keep.value_or(PageBytes{});
        g.payload = g.data.empty() ? Msg::Payload::kZero : Msg::Payload::kData;  // empty: zeros
      }
      break;
    case State::kExclusive:
      if (owner_of(w) == r) {
        // A stale request from the owner: it has everything already.
        g.access = Access::kWrite;
        g.payload = Msg::Payload::kNone;
        t.wanted = Access::kWrite;
      } else {
        g.source = owner_of(w);
        g.data = t.recalled.value_or(PageBytes{});
        g.payload = g.data.empty() ? Msg::Payload::kZero : Msg::Payload::kData;  // empty: zeros
        if (t.wanted == Access::kRead) {
          // The old owner kept a read-only copy. When that owner is this host, its mapped
          // copy is the data; else the home keeps one while the page is shared.
          sharers = bit(owner_of(w));
          self_copy = owner_of(w) == self_;
          if (!self_copy && !g.data.empty()) keep = g.data;
        }
      }
      break;
  }
  home_copies_.erase(page);
  if (t.wanted == Access::kRead) {
    set_word(page, pack(State::kShared, 0, sharers | bit(r), self_copy));
    if (!self_copy && keep && !keep->empty()) home_copies_[page] = std::move(*keep);
  } else {
    set_word(page, pack(State::kExclusive, r, 0, false));
  }
  out.push_back(std::move(g));
}

Access PageRequester::access(uint64_t page) const {
  switch (directory_.state(page)) {
    case PageState::kShared:
      return Access::kRead;
    case PageState::kPresent:
      return Access::kWrite;
    default:
      return Access::kNone;
  }
}

void PageRequester::set_access(uint64_t page, Access a) {
  const PageState s = a == Access::kWrite  ? PageState::kPresent
                      : a == Access::kRead ? PageState::kShared
                                           : PageState::kDormant;
  directory_.set_range(page, 1, s);
}

PageRequester::View PageRequester::view(uint64_t page) const {
  View v{access(page)};
  if (auto it = in_flight_.find(page); it != in_flight_.end()) {
    v.asked = it->second.asked;
    v.upgrade_after = it->second.upgrade_after;
    v.prefetch = it->second.prefetch;
    v.faulted = it->second.faulted;
  }
  return v;
}

std::vector<Msg> PageRequester::on_fault(uint64_t page, Access access, NodeId home) {
  if (this->access(page) >= access) return {};
  if (auto it = in_flight_.find(page); it != in_flight_.end()) {
    if (it->second.prefetch)
      it->second.faulted = std::max(it->second.faulted, access);  // wait for the answer
    else if (access > it->second.asked)
      it->second.upgrade_after = true;
    return {};
  }
  in_flight_[page] = InFlight{access, false};
  return {Msg{Type::kRequest, page, self_, home, access}};
}

std::vector<Msg> PageRequester::prefetch(uint64_t page, NodeId home) {
  if (access(page) != Access::kNone || in_flight_.count(page)) return {};
  in_flight_[page] = InFlight{Access::kWrite, false, true, Access::kNone};
  return {Msg{Type::kPrefetch, page, self_, home, Access::kWrite}};
}

std::vector<Msg> PageRequester::on_message(const Msg& m) {
  switch (m.type) {
    case Type::kGrant: {
      pages_.install(m.page, m.access, m.payload, m.data);
      set_access(m.page, m.access);
      auto it = in_flight_.find(m.page);
      const bool upgrade = it != in_flight_.end() && it->second.upgrade_after;
      if (upgrade && m.access < Access::kWrite) {
        it->second = InFlight{Access::kWrite, false};
        return {Msg{Type::kRequest, m.page, self_, m.from, Access::kWrite}};
      }
      if (it != in_flight_.end()) in_flight_.erase(it);
      return {};
    }
    case Type::kDecline: {
      auto it = in_flight_.find(m.page);
      if (it == in_flight_.end() || !it->second.prefetch) return {};
      const Access wanted = it->second.faulted;
      if (wanted == Access::kNone) {
        in_flight_.erase(it);
        return {};
      }
      it->second = InFlight{wanted, false};  // a vCPU waits: ask for it properly now
      return {Msg{Type::kRequest, m.page, self_, m.from, wanted}};
    }
    case Type::kInvalidate:
      // Also when this host already lost the copy: the ack is what the home waits for.
      if (access(m.page) != Access::kNone) pages_.drop(m.page);
      set_access(m.page, Access::kNone);
      return {Msg{Type::kInvalidateAck, m.page, self_, m.from}};
    case Type::kRecall: {
      // Write-protect before reading out, so a racing local write cannot slip past the copy.
      Msg ack{Type::kRecallAck, m.page, self_, m.from};
      ack.data = pages_.write_protect_and_read(m.page);
      ack.payload = ack.data.empty() ? Msg::Payload::kZero : Msg::Payload::kData;
      if (m.access == Access::kRead) {
        set_access(m.page, Access::kRead);  // stays mapped, read-only
      } else {
        pages_.drop(m.page);
        set_access(m.page, Access::kNone);
      }
      return {ack};
    }
    default:
      return {};
  }
}

}  // namespace shoal

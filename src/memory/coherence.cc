#include "memory/coherence.hpp"

namespace shoal {

using Msg = CoherenceMessage;
using Type = CoherenceMessage::Type;

const HomeDirectory::Entry* HomeDirectory::entry(uint64_t page) const {
  auto it = pages_.find(page);
  return it == pages_.end() ? nullptr : &it->second;
}

bool HomeDirectory::claim_uncached(uint64_t page, NodeId r) {
  auto it = pages_.find(page);
  if (it != pages_.end()) {
    Entry& e = it->second;
    if (e.state != State::kUncached || e.busy || !e.queue.empty()) return false;
  }
  Entry& e = it != pages_.end() ? it->second : pages_[page];
  e.state = State::kExclusive;
  e.owner = r;
  return true;
}

std::vector<Msg> HomeDirectory::on_message(const Msg& m) {
  std::vector<Msg> out;
  Entry& e = pages_[m.page];
  switch (m.type) {
    case Type::kRequest:
      if (e.busy)
        e.queue.push_back(m);  // one transaction per page at a time
      else
        start(e, m, out);
      break;
    case Type::kInvalidateAck:
      if (e.busy && e.acks_pending > 0 && --e.acks_pending == 0) finish(e, m.page, out);
      break;
    case Type::kRecallAck:
      if (!e.busy || e.state != State::kExclusive) break;
      e.recalled = m.data;
      finish(e, m.page, out);
      break;
    default:
      break;  // grants, invalidates and recalls go to requesters, not here
  }
  return out;
}

void HomeDirectory::start(Entry& e, const Msg& req, std::vector<Msg>& out) {
  e.busy = true;
  e.requester = req.from;
  e.wanted = req.access;
  if (e.state == State::kShared && req.access == Access::kWrite) {
    for (NodeId s : e.sharers)
      if (s != req.from) {
        out.push_back(Msg{Type::kInvalidate, req.page, self_, s});
        ++e.acks_pending;
      }
    if (e.acks_pending > 0) return;  // finish() on the last ack
  } else if (e.state == State::kExclusive && e.owner != req.from) {
    out.push_back(Msg{Type::kRecall, req.page, self_, e.owner, req.access});
    return;  // finish() on the recall ack
  }
  finish(e, req.page, out);
}

void HomeDirectory::finish(Entry& e, uint64_t page, std::vector<Msg>& out) {
  const NodeId r = e.requester;
  Msg g{Type::kGrant, page, self_, r, e.wanted};
  switch (e.state) {
    case State::kUncached:
      // Dormant: nobody has a copy; the requester serves it from its own zero pool, and no
      // page crosses the wire.
      g.payload = Msg::Payload::kZero;
      e.home_copy.reset();
      e.sharers.clear();
      break;
    case State::kShared:
      if (e.sharers.count(r))
        g.payload = Msg::Payload::kNone;  // an upgrade: keep the copy you have
      else if (e.home_copy && !e.home_copy->empty())
        g.payload = Msg::Payload::kData, g.data = *e.home_copy;
      else
        g.payload = Msg::Payload::kZero;  // shared but never written: still zeros
      break;
    case State::kExclusive:
      if (e.owner == r) {
        // A stale request from the owner: it has everything already.
        g.access = Access::kWrite;
        g.payload = Msg::Payload::kNone;
        e.wanted = Access::kWrite;
      } else {
        g.data = e.recalled.value_or(PageBytes{});
        g.payload = g.data.empty() ? Msg::Payload::kZero : Msg::Payload::kData;  // empty: zeros
        if (e.wanted == Access::kRead) {
          // The old owner kept a read-only copy; home keeps one too while the page is shared.
          e.home_copy = e.recalled;
          e.sharers = {e.owner};
        }
      }
      break;
  }
  if (e.wanted == Access::kRead) {
    e.state = State::kShared;
    e.sharers.insert(r);
  } else {
    e.state = State::kExclusive;
    e.owner = r;
    e.sharers.clear();
    e.home_copy.reset();
  }
  e.recalled.reset();
  e.busy = false;
  e.acks_pending = 0;
  out.push_back(std::move(g));
  // Serve what queued up behind this transaction, in order.
  while (!e.busy && !e.queue.empty()) {
    Msg next = std::move(e.queue.front());
    e.queue.pop_front();
    start(e, next, out);
  }
}

Access PageRequester::access(uint64_t page) const {
  auto it = pages_state_.find(page);
  return it == pages_state_.end() ? Access::kNone : it->second.have;
}

PageRequester::View PageRequester::view(uint64_t page) const {
  auto it = pages_state_.find(page);
  if (it == pages_state_.end()) return {};
  return {it->second.have, it->second.asked, it->second.upgrade_after};
}

bool PageRequester::pending(uint64_t page) const {
  auto it = pages_state_.find(page);
  return it != pages_state_.end() && it->second.asked != Access::kNone;
}

std::vector<Msg> PageRequester::on_fault(uint64_t page, Access access, NodeId home) {
  Entry& e = pages_state_[page];
  e.home = home;
  if (e.have >= access) return {};
  if (e.asked != Access::kNone) {
    if (access > e.asked) e.upgrade_after = true;
    return {};
  }
  e.asked = access;
  return {Msg{Type::kRequest, page, self_, home, access}};
}

std::vector<Msg> PageRequester::on_message(const Msg& m) {
  Entry& e = pages_state_[m.page];
  switch (m.type) {
    case Type::kGrant: {
      pages_.install(m.page, m.access, m.payload, m.data);
      e.have = m.access;
      e.asked = Access::kNone;
      if (e.upgrade_after && e.have < Access::kWrite) {
        e.upgrade_after = false;
        e.asked = Access::kWrite;
        return {Msg{Type::kRequest, m.page, self_, m.from, Access::kWrite}};
      }
      e.upgrade_after = false;
      return {};
    }
    case Type::kInvalidate:
      // Also when this host already lost the copy: the ack is what the home waits for.
      if (e.have != Access::kNone) pages_.drop(m.page);
      e.have = Access::kNone;
      return {Msg{Type::kInvalidateAck, m.page, self_, m.from}};
    case Type::kRecall: {
      // Write-protect before reading out, so a racing local write cannot slip past the copy.
      Msg ack{Type::kRecallAck, m.page, self_, m.from};
      ack.data = pages_.write_protect_and_read(m.page);
      ack.payload = ack.data.empty() ? Msg::Payload::kZero : Msg::Payload::kData;
      if (m.access == Access::kRead) {
        e.have = Access::kRead;  // stays mapped, read-only
      } else {
        pages_.drop(m.page);
        e.have = Access::kNone;
      }
      return {ack};
    }
    default:
      return {};
  }
}

}  // namespace shoal

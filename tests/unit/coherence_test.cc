// The coherence protocol, model-checked: a home directory and a requester per host, connected
// by a fake transport (FIFO per ordered pair of hosts, as TCP is), driven through EVERY
// interleaving of local steps and message deliveries for small scenarios of two or three
// concurrent requests on one page. Each execution must finish every operation (no deadlock),
// never have a writer alongside another copy (single writer / multiple readers), and end with
// every write counted (no lost write).
#include "memory/coherence.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

namespace shoal {
namespace {

constexpr uint64_t kPage = 42;
constexpr NodeId kHome = 0;

PageBytes encode(uint64_t v) {
  PageBytes b(8);
  std::memcpy(b.data(), &v, 8);
  return b;
}
uint64_t decode(const PageBytes& b) {
  uint64_t v = 0;
  if (b.size() == 8) std::memcpy(&v, b.data(), 8);
  return v;
}

// A host's copy of the page: the access it is mapped with and its value (the "contents").
class FakePages : public LocalPages {
 public:
  void install(uint64_t, Access access, CoherenceMessage::Payload payload,
               const PageBytes& data) override {
    if (payload == CoherenceMessage::Payload::kZero) value = 0, zero_installs++;
    if (payload == CoherenceMessage::Payload::kData) value = decode(data), data_installs++;
    if (payload == CoherenceMessage::Payload::kNone && mapped == Access::kNone)
      keep_without_copy = true;
    mapped = access;
  }
  PageBytes write_protect_and_read(uint64_t) override {
    if (mapped == Access::kWrite) mapped = Access::kRead;
    return encode(value);
  }
  void drop(uint64_t) override { mapped = Access::kNone; }
  PageBytes read(uint64_t) override {
    EXPECT_EQ(mapped, Access::kRead) << "the home read a copy it does not hold read-only";
    return encode(value);
  }

  Access mapped = Access::kNone;
  uint64_t value = 0;
  int zero_installs = 0, data_installs = 0;
  bool keep_without_copy = false;  // a grant said "keep yours" with nothing mapped: a bug
};

struct Op {
  NodeId node;
  Access access;  // kNone: the node's guest discards the page; kPrefetchOp: reads ahead
};
// Not an access: the node's memory prefetches the page (a sequential run of first touches).
constexpr Access kPrefetchOp = static_cast<Access>(3);

struct World {
  explicit World(int nodes) {
    for (int n = 0; n < nodes; ++n) {
      pages.push_back(std::make_unique<FakePages>());
      directories.push_back(
          std::make_unique<PageDirectory>(std::move(*PageDirectory::create(kPage + 1))));
      requesters.push_back(std::make_unique<PageRequester>(static_cast<NodeId>(n),
                                                           *directories.back(), *pages.back()));
    }
    home.emplace(std::move(*HomeDirectory::create(kHome, kPage + 1, *pages[kHome])));
  }
  std::vector<std::unique_ptr<FakePages>> pages;
  std::vector<std::unique_ptr<PageDirectory>> directories;
  std::optional<HomeDirectory> home;
  std::vector<std::unique_ptr<PageRequester>> requesters;
  std::map<std::pair<NodeId, NodeId>, std::deque<CoherenceMessage>> channels;
  std::map<NodeId, std::deque<Access>> todo;  // per node, its operations in order
  uint64_t writes_done = 0;
  std::map<NodeId, uint64_t> last_read;
  std::map<NodeId, bool> asleep;  // the node's vCPU faulted and waits for an install
  bool discards = false;          // a discard makes the page zero again: reads may go back to 0
  std::string trace;

  void send(const std::vector<CoherenceMessage>& msgs) {
    for (const auto& m : msgs) channels[{m.from, m.to}].push_back(m);
  }
  static bool to_home(const CoherenceMessage& m) { return is_for_home(m.type); }

  // Every action enabled now: local steps of nodes with work left, and channel deliveries.
  std::vector<std::function<void()>> actions() {
    std::vector<std::function<void()>> acts;
    for (auto& [node, ops] : todo) {
      if (ops.empty()) continue;
      const NodeId n = node;
      const Access want = ops.front();
      PageRequester& r = *requesters[n];
      if (want == kPrefetchOp) {
        acts.push_back([this, n] {
          send(requesters[n]->prefetch(kPage, kHome));
          todo[n].pop_front();
          trace += "\n  node " + std::to_string(n) + " prefetches";
        });
      } else if (want == Access::kNone) {
        acts.push_back([this, n] {
          send({CoherenceMessage{CoherenceMessage::Type::kDiscard, kPage, n, kHome}});
          discards = true;
          todo[n].pop_front();
          trace += "\n  node " + std::to_string(n) + " discards";
        });
      } else if (r.access(kPage) >= want) {
        acts.push_back([this, n, want] {
          FakePages& p = *pages[n];
          if (want == Access::kWrite) {
            ++p.value;  // the write: an increment, so a lost one shows in the total
            ++writes_done;
          } else {
            if (!discards)
              EXPECT_GE(p.value, last_read[n]) << "node " << n << " read went backwards" << trace;
            last_read[n] = p.value;
          }
          todo[n].pop_front();
          trace +=
              "\n  node " + std::to_string(n) + (want == Access::kWrite ? " writes" : " reads");
        });
      } else if (!asleep[n] && (!r.pending(kPage) || r.view(kPage).prefetch)) {
        // A fault puts the vCPU to sleep until a grant installs the page (the kernel wakes
        // it); a fault on a page whose prefetch is out waits for that answer too.
        acts.push_back([this, n, want] {
          asleep[n] = true;
          send(requesters[n]->on_fault(kPage, want, kHome));
          trace += "\n  node " + std::to_string(n) + " faults";
        });
      }
    }
    for (auto& [key, q] : channels) {
      if (q.empty()) continue;
      const auto k = key;
      acts.push_back([this, k] {
        CoherenceMessage m = channels[k].front();
        channels[k].pop_front();
        trace += "\n  deliver " + std::to_string(static_cast<int>(m.type)) + " " +
                 std::to_string(m.from) + "->" + std::to_string(m.to);
        send(to_home(m) ? home->on_message(m) : requesters[m.to]->on_message(m));
        if (m.type == CoherenceMessage::Type::kGrant) asleep[m.to] = false;
        // As CoherentMemory does: the home's grant to itself is installed, so its copy holds
        // the shared data from now on.
        if (m.type == CoherenceMessage::Type::kGrant && m.to == kHome)
          home->self_copy_installed(kPage);
      });
    }
    return acts;
  }

  // Everything that decides what can happen next, as text (for the visited set).
  std::string key() const {
    std::ostringstream k;
    {
      const HomeDirectory::Entry e = home->entry(kPage);
      k << "H" << int(e.state) << "o" << e.owner << "b" << e.busy << "r" << e.requester << "w"
        << int(e.wanted) << "a" << e.acks_pending << "l" << e.self_copy << "c"
        << (e.home_copy ? std::to_string(decode(*e.home_copy)) : "-") << "s";
      for (NodeId n : e.sharers) k << n << ",";
      k << "q";
      for (const auto& m : e.queue) k << m.from << int(m.access) << ",";
    }
    for (size_t n = 0; n < pages.size(); ++n) {
      const auto v = requesters[n]->view(kPage);
      k << "|N" << int(v.have) << int(v.asked) << v.upgrade_after << v.prefetch << int(v.faulted)
        << int(pages[n]->mapped) << ":" << pages[n]->value;
      auto t = todo.find(static_cast<NodeId>(n));
      if (t != todo.end())
        for (Access a : t->second) k << int(a);
      auto as = asleep.find(static_cast<NodeId>(n));
      k << "s" << (as != asleep.end() && as->second);
      auto lr = last_read.find(static_cast<NodeId>(n));
      k << "r" << (lr == last_read.end() ? 0 : lr->second);
    }
    for (const auto& [ch, q] : channels) {
      if (q.empty()) continue;
      k << "|C" << ch.first << ">" << ch.second << ":";
      for (const auto& m : q)
        k << int(m.type) << int(m.access) << int(m.payload) << (m.data.empty() ? 0 : decode(m.data))
          << ",";
    }
    k << "|W" << writes_done;
    return k.str();
  }

  void check_invariants() {
    int writers = 0, readers = 0;
    for (size_t n = 0; n < pages.size(); ++n) {
      const Access a = requesters[n]->access(kPage);
      EXPECT_EQ(a, pages[n]->mapped) << "node " << n << trace;
      EXPECT_FALSE(pages[n]->keep_without_copy) << "node " << n << trace;
      if (a == Access::kWrite) ++writers;
      if (a == Access::kRead) ++readers;
    }
    EXPECT_LE(writers, 1) << trace;
    if (writers == 1) {
      EXPECT_EQ(readers, 0) << "a writer alongside readers" << trace;
    }
  }
};

struct Scenario {
  int nodes;
  std::vector<Op> setup;  // done first, sequentially (to reach a starting state)
  std::vector<Op> concurrent;
};

// Runs the scenario following `choices`, then records the next choice points; returns false
// when a check failed.
struct Explorer {
  Scenario sc;
  uint64_t executions = 0;
  uint64_t max_executions = 2'000'000;
  static constexpr size_t kMaxSteps = 200;  // longer means the protocol goes round in circles
  std::set<std::string> visited;            // states already expanded: their futures are known
  bool pruned = false;

  std::unique_ptr<World> replay(const std::vector<size_t>& choices, std::vector<size_t>& widths) {
    auto w = std::make_unique<World>(sc.nodes);
    // Setup: one operation at a time, run to quiescence in a fixed order.
    for (const Op& op : sc.setup) {
      w->todo[op.node].push_back(op.access);
      for (auto acts = w->actions(); !acts.empty(); acts = w->actions()) acts.front()();
    }
    w->trace = "\ntrace:";
    const uint64_t base = w->writes_done;
    for (const Op& op : sc.concurrent) w->todo[op.node].push_back(op.access);
    w->writes_done = base;
    widths.clear();
    pruned = false;
    for (size_t step = 0;; ++step) {
      if (step >= choices.size() && !visited.insert(w->key()).second) {
        pruned = true;  // reached before along another path and explored from there
        break;
      }
      EXPECT_LT(step, kMaxSteps) << "livelock: no end after " << kMaxSteps << " steps" << w->trace;
      if (step >= kMaxSteps) break;
      auto acts = w->actions();
      if (acts.empty()) break;
      widths.push_back(acts.size());
      const size_t pick = step < choices.size() ? choices[step] : 0;
      acts[pick]();
      w->check_invariants();
      if (::testing::Test::HasFailure()) break;
    }
    return w;
  }

  void run() {
    std::vector<size_t> choices, widths;
    const uint64_t expected_writes = [&] {
      uint64_t n = 0;
      for (const Op& op : sc.setup) n += op.access == Access::kWrite;
      for (const Op& op : sc.concurrent) n += op.access == Access::kWrite;
      return n;
    }();
    for (;;) {
      auto w = replay(choices, widths);
      ++executions;
      // Terminal checks: nothing left undone, and the page's value is every write.
      if (!pruned) {
        for (const auto& [node, ops] : w->todo)
          EXPECT_TRUE(ops.empty()) << "deadlock: node " << node << " never finished" << w->trace;
        // With a discard, the writes ordered before it at the home are gone by design: every
        // copy still agrees, and holds no more than the writes made.
        std::optional<uint64_t> seen;
        for (size_t n = 0; n < w->pages.size(); ++n)
          if (w->requesters[n]->access(kPage) != Access::kNone) {
            if (w->discards) {
              EXPECT_LE(w->pages[n]->value, expected_writes) << w->trace;
              if (seen) EXPECT_EQ(w->pages[n]->value, *seen) << "copies differ" << w->trace;
              seen = w->pages[n]->value;
            } else {
              EXPECT_EQ(w->pages[n]->value, expected_writes)
                  << "lost write at node " << n << w->trace;
            }
          }
        EXPECT_EQ(w->writes_done, expected_writes);
        if (w->discards) {
          // Quiescent: the home has handled every discard; it must not still hold state
          // for a page nobody maps.
          const auto e = w->home->entry(kPage);
          EXPECT_FALSE(e.busy) << w->trace;
        }
      }
      if (::testing::Test::HasFailure() || executions >= max_executions) return;
      // Next execution: depth-first, the last choice point with an untried branch.
      choices.resize(widths.size(), 0);
      size_t i = widths.size();
      while (i > 0 && choices[i - 1] + 1 >= widths[i - 1]) --i;
      if (i == 0) return;
      ++choices[i - 1];
      choices.resize(i);
    }
  }
};

uint64_t explore(Scenario sc) {
  Explorer e;
  e.sc = std::move(sc);
  e.run();
  EXPECT_LT(e.executions, e.max_executions) << "state space not exhausted";
  return e.executions;
}

constexpr Access R = Access::kRead, W = Access::kWrite;

TEST(Coherence, TwoConcurrentRequestsFromDormant) {
  for (auto [a, b] : {std::pair{W, W}, {R, W}, {W, R}, {R, R}}) {
    const uint64_t n = explore({3, {}, {{1, a}, {2, b}}});
    EXPECT_GT(n, 5u);
  }
}

TEST(Coherence, TwoConcurrentRequestsFromShared) {
  for (auto [a, b] : {std::pair{W, W}, {R, W}, {W, R}})
    explore({3, {{1, R}, {2, R}, {0, R}}, {{1, a}, {2, b}}});
}

TEST(Coherence, TwoConcurrentRequestsFromExclusive) {
  for (auto [a, b] : {std::pair{W, W}, {R, W}, {W, R}, {R, R}})
    explore({3, {{0, W}}, {{1, a}, {2, b}}});
}

TEST(Coherence, ThreeConcurrentRequests) {
  uint64_t total = 0;
  for (auto ops : {std::vector<Op>{{0, W}, {1, W}, {2, W}},
                   {{0, R}, {1, W}, {2, R}},
                   {{0, W}, {1, R}, {2, W}}})
    total += explore({3, {{1, W}}, ops});
  std::printf("explored %llu executions (distinct states expanded once) of three requests\n",
              static_cast<unsigned long long>(total));
  EXPECT_GT(total, 100u);
}

TEST(Coherence, ReadThenWriteOnOneHostAgainstAWriter) {
  // The upgrade path: a host that reads, then writes, while another host writes.
  explore({3, {}, {{1, R}, {1, W}, {2, W}}});
}

TEST(Coherence, SharedDataFromTheHomesOwnCopyOrItsTable) {
  // The home serves shared data from its mapped copy when it is a sharer (its copy is
  // invalidated alongside the others on a write), else from its table.
  explore({3, {{0, W}, {1, R}}, {{2, R}, {1, W}}});
  explore({3, {{0, W}, {1, R}}, {{2, W}, {0, R}}});
  explore({3, {{1, W}, {2, R}}, {{0, R}, {2, W}}});
  // The home's read grant to itself is on its way when another host's write starts: the home
  // must not then take its copy (about to be invalidated) for the data (a pod hung on this).
  explore({3, {{1, W}}, {{0, R}, {2, W}}});
  explore({3, {{1, W}}, {{0, R}, {2, R}, {1, W}}});
}

constexpr Access D = Access::kNone;  // a discard

TEST(Coherence, DiscardsAgainstReadersAndWritersOnEveryHost) {
  // From each starting state, a discard by the home, by a sharer/owner and by a bystander,
  // racing with reads and writes.
  for (NodeId d : {0, 1, 2}) {
    explore({3, {}, {{d, D}, {1, W}}});
    explore({3, {{1, W}}, {{d, D}, {2, R}}});
    explore({3, {{1, W}}, {{d, D}, {2, W}}});
    explore({3, {{1, R}, {2, R}, {0, R}}, {{d, D}, {1, W}}});
    explore({3, {{0, W}, {1, R}}, {{d, D}, {2, R}, {1, W}}});
  }
}

TEST(Coherence, PrefetchesAgainstRequestsDiscardsAndEachOther) {
  // A prefetch is granted only for a dormant page and never takes one away; a fault that
  // comes while it is out waits and, on a decline, asks properly.
  constexpr Access P = kPrefetchOp;
  for (NodeId n : {1, 0}) {
    explore({3, {}, {{n, P}, {n, W}, {2, W}}});
    explore({3, {}, {{n, P}, {n, R}, {2, R}}});
    explore({3, {{2, W}}, {{n, P}, {n, R}}});          // not dormant: declined
    explore({3, {{2, R}, {1, R}}, {{n, P}, {n, W}}});  // shared: declined
    explore({3, {}, {{n, P}, {2, D}, {n, W}}});
    explore({3, {{2, W}}, {{2, D}, {n, P}, {n, R}}});  // dormant again after a discard
  }
  explore({3, {}, {{1, P}, {2, P}, {1, W}, {2, W}}});
}

TEST(Coherence, ADiscardLeavesThePageDormantEverywhere) {
  // Shared by all three hosts (the home's own mapped copy included), then discarded by a
  // sharer: every copy goes, the home forgets the page, and the next touch is a first touch.
  World w(3);
  auto settle = [&] {
    for (auto acts = w.actions(); !acts.empty(); acts = w.actions()) acts.front()();
  };
  w.todo[1].push_back(W);
  settle();
  for (NodeId n : {0, 2, 1}) w.todo[n].push_back(R);
  settle();
  ASSERT_EQ(w.home->entry(kPage).state, HomeDirectory::State::kShared);
  ASSERT_EQ(w.home->entry(kPage).sharers.size(), 3u);
  w.todo[2].push_back(D);
  settle();
  const auto e = w.home->entry(kPage);
  EXPECT_EQ(e.state, HomeDirectory::State::kUncached);
  EXPECT_FALSE(e.home_copy.has_value());
  EXPECT_FALSE(e.self_copy);
  for (NodeId n = 0; n < 3; ++n) {
    EXPECT_EQ(w.pages[n]->mapped, Access::kNone) << n;
    EXPECT_EQ(w.directories[n]->state(kPage), PageState::kDormant) << n;
  }
  const int zeros_before = w.pages[2]->zero_installs;
  w.todo[2].push_back(R);
  settle();
  EXPECT_EQ(w.pages[2]->value, 0u);
  EXPECT_EQ(w.pages[2]->zero_installs, zeros_before + 1);  // a zero grant: no data sent
}

TEST(Coherence, TheHomeKeepsNoSecondCopyOfAPageItHoldsShared) {
  // Host 1 writes a page homed at host 0, then host 0 reads it: host 0's mapped copy is the
  // data; the home's table keeps nothing (it once kept a 4 KiB copy of every such page).
  World w(2);
  for (const Op& op : {Op{1, W}, Op{0, R}}) {
    w.todo[op.node].push_back(op.access);
    for (auto acts = w.actions(); !acts.empty(); acts = w.actions()) acts.front()();
  }
  const HomeDirectory::Entry e = w.home->entry(kPage);
  EXPECT_EQ(e.state, HomeDirectory::State::kShared);
  EXPECT_TRUE(e.self_copy);
  EXPECT_FALSE(e.home_copy.has_value());
  EXPECT_EQ(w.home->home_copies(), 0u);
  EXPECT_EQ(w.home->transactions_in_flight(), 0u);
  EXPECT_EQ(w.pages[0]->value, 1u);
}

TEST(Coherence, AWriteThatStartsWhileTheHomesOwnReadGrantTravelsGetsTheData) {
  // The interleaving that hung a 3-host pod, step by step: host 1 owns the page; the home
  // (host 0) reads it and host 2 writes it; the write starts while the home's read grant to
  // itself is still on its way, and its invalidation drops that copy again.
  World w(3);
  w.todo[1].push_back(W);
  for (auto acts = w.actions(); !acts.empty(); acts = w.actions()) acts.front()();
  auto deliver = [&](NodeId from, NodeId to) {
    auto& q = w.channels[{from, to}];
    ASSERT_FALSE(q.empty()) << from << "->" << to;
    CoherenceMessage m = q.front();
    q.pop_front();
    w.send(World::to_home(m) ? w.home->on_message(m) : w.requesters[m.to]->on_message(m));
    if (m.type == CoherenceMessage::Type::kGrant && m.to == kHome)
      w.home->self_copy_installed(kPage);
  };
  w.send(w.requesters[0]->on_fault(kPage, R, kHome));
  w.send(w.requesters[2]->on_fault(kPage, W, kHome));
  deliver(0, 0);  // the home's read request: recall from host 1
  deliver(2, 0);  // host 2's write waits behind it
  deliver(0, 1);  // host 1 downgrades and sends the data
  deliver(1, 0);  // the home grants itself, then starts the write: invalidate 1 and 0
  deliver(0, 0);  // the home's grant to itself arrives
  deliver(0, 0);  // then its invalidation
  deliver(0, 1);
  deliver(1, 0);
  deliver(0, 0);  // the last ack: host 2 is granted
  auto& to2 = w.channels[{kHome, 2}];
  ASSERT_EQ(to2.size(), 1u);
  EXPECT_EQ(to2.front().payload, CoherenceMessage::Payload::kData);
  EXPECT_EQ(decode(to2.front().data), 1u) << "host 2 must get host 1's write";
}

TEST(Coherence, RecallsAndInvalidationsNameTheHostThePageIsTakenFor) {
  World w(3);
  // Host 1 writes the page; host 2's write recalls it from host 1 for host 2.
  auto grant1 = w.home->on_message(w.requesters[1]->on_fault(kPage, W, kHome).at(0));
  w.requesters[1]->on_message(grant1.at(0));
  auto recall = w.home->on_message(w.requesters[2]->on_fault(kPage, W, kHome).at(0));
  ASSERT_EQ(recall.size(), 1u);
  EXPECT_EQ(recall[0].type, CoherenceMessage::Type::kRecall);
  EXPECT_EQ(recall[0].to, 1);
  EXPECT_EQ(recall[0].taker, 2);
  // Host 2 gets it; then hosts 0 and 1 read it and host 1 writes: host 0's copy is
  // invalidated for host 1.
  w.requesters[2]->on_message(
      w.home->on_message(w.requesters[1]->on_message(recall[0]).at(0)).at(0));
  for (NodeId n : {NodeId{0}, NodeId{1}}) {
    auto out = w.home->on_message(w.requesters[n]->on_fault(kPage, R, kHome).at(0));
    while (!out.empty()) {
      const CoherenceMessage m = out.front();
      out.erase(out.begin());
      auto more = World::to_home(m) ? w.home->on_message(m) : w.requesters[m.to]->on_message(m);
      out.insert(out.end(), more.begin(), more.end());
    }
  }
  auto inv = w.home->on_message(w.requesters[1]->on_fault(kPage, W, kHome).at(0));
  bool seen = false;
  for (const auto& m : inv)
    if (m.type == CoherenceMessage::Type::kInvalidate) {
      seen = true;
      EXPECT_EQ(m.taker, 1);
    }
  EXPECT_TRUE(seen);
}

TEST(Coherence, FirstTouchOfADormantPageSendsNoData) {
  World w(2);
  auto req = w.requesters[1]->on_fault(kPage, W, kHome);
  ASSERT_EQ(req.size(), 1u);
  auto grant = w.home->on_message(req[0]);
  ASSERT_EQ(grant.size(), 1u);
  EXPECT_EQ(grant[0].payload, CoherenceMessage::Payload::kZero);
  EXPECT_TRUE(grant[0].data.empty());
}

}  // namespace
}  // namespace shoal

// Two hosts' coherent memory in one process, as tests/unit/coherent_memory_test.cc has it, but
// every coherence message crosses an RdmaLink on the soft-RoCE device: real userfaultfd
// mappings, faults taken by plain threads (no KVM), frames over verbs SEND/RECV.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <thread>

#include "memory/coherent_memory.hpp"
#include "net/coherence_wire.hpp"
#include "rdma/rdma_test_support.hpp"

namespace shoal {
namespace {

constexpr uint64_t kBytes = 8ull << 20;

// Host i sends over its end of the pair; a reader thread per end delivers what arrives.
struct RdmaWire : CoherenceTransport {
  net::Link* out = nullptr;
  Status send(const CoherenceMessage& m) override { return out->send(net::encode_coherence(m)); }
};

class TwoHostsOverRdma : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pair = test::make_link_pair();
    if (!pair) GTEST_SKIP() << pair.error().message();
    links = std::move(*pair);
    wires[0].out = links.a.get();
    wires[1].out = links.b.get();
    for (int i = 0; i < 2; ++i) {
      void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      ASSERT_NE(p, MAP_FAILED);
      ram[i] = static_cast<uint8_t*>(p);
      CoherentMemoryConfig c;
      c.self = static_cast<NodeId>(i);
      c.home_of_piece = {0, 0, 1, 1};  // first 4 MiB homed on host 0, the rest on host 1
      c.pool_bytes = 4ull << 20;
      auto m = CoherentMemory::create(ram[i], kBytes, c, wires[i], [this](const Error& e) {
        std::lock_guard lock(fatal_mu);
        fatal = e.message();
      });
      ASSERT_TRUE(m.ok()) << m.error().message();
      mem[i] = std::move(*m);
    }
    for (int i = 0; i < 2; ++i)
      readers[i] = std::thread([this, i] {
        net::Link* in = i == 0 ? static_cast<net::Link*>(links.a.get()) : links.b.get();
        for (;;) {
          auto f = in->receive();
          if (!f || f->type == net::MessageType::kBye) return;
          auto m = net::decode_coherence(*f);
          if (!m) {
            std::lock_guard lock(fatal_mu);
            fatal = m.error().message();
            return;
          }
          mem[i]->deliver(std::move(*m));
        }
      });
  }
  void TearDown() override {
    if (links.a) {
      (void)links.a->send(net::Frame{net::MessageType::kBye, 0, {}});
      (void)links.b->send(net::Frame{net::MessageType::kBye, 0, {}});
    }
    for (auto& r : readers)
      if (r.joinable()) r.join();
    for (auto& m : mem) m.reset();
    for (auto* r : ram)
      if (r) munmap(r, kBytes);
    EXPECT_EQ(fatal, "");
  }

  test::LinkPair links;
  std::array<RdmaWire, 2> wires;
  std::array<uint8_t*, 2> ram{};
  std::array<std::unique_ptr<CoherentMemory>, 2> mem;
  std::array<std::thread, 2> readers;
  std::mutex fatal_mu;
  std::string fatal;
};

TEST_F(TwoHostsOverRdma, WritesOnOneHostAreSeenOnTheOther) {
  std::thread([&] {
    for (uint64_t off = 0; off < kBytes; off += 64 << 10)
      ram[0][off] = static_cast<uint8_t>(off >> 16);
  }).join();
  std::thread([&] {
    for (uint64_t off = 0; off < kBytes; off += 64 << 10)
      ASSERT_EQ(ram[1][off], static_cast<uint8_t>(off >> 16)) << "offset " << off;
  }).join();
}

TEST_F(TwoHostsOverRdma, ConcurrentAtomicIncrementsFromBothHostsAreExact) {
  constexpr uint64_t kPerThread = 100000;
  auto* a1 = reinterpret_cast<uint64_t*>(ram[0] + (5ull << 20));
  auto* b1 = reinterpret_cast<uint64_t*>(ram[1] + (5ull << 20));
  auto* a0 = reinterpret_cast<uint64_t*>(ram[0] + (1ull << 20));
  auto* b0 = reinterpret_cast<uint64_t*>(ram[1] + (1ull << 20));
  auto work = [](uint64_t* p, uint64_t* q) {
    for (uint64_t i = 0; i < kPerThread; ++i)
      __atomic_fetch_add(i & 1 ? p : q, 1, __ATOMIC_SEQ_CST);
  };
  std::thread t0(work, a1, a0), t1(work, b1, b0), t2(work, a1 + 1, a0 + 1), t3(work, b1 + 1, b0);
  t0.join(), t1.join(), t2.join(), t3.join();
  uint64_t total = 0;
  std::thread([&] { total = a1[0] + a1[1] + a0[0] + a0[1]; }).join();
  EXPECT_EQ(total, 4 * kPerThread);
  // Remote faults were served, and RDMA was the only way between the hosts.
  auto lat = mem[0]->take_latencies();
  EXPECT_GT(lat.write_us.size() + lat.read_us.size(), 0u) << "no remote fault on host 0";
}

}  // namespace
}  // namespace shoal

// Two hosts' coherent memory in one process: real userfaultfd mappings, faults taken by plain
// threads (no KVM), and an in-process transport that hands each message to the other host.
#include "memory/coherent_memory.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace shoal {
namespace {

constexpr uint64_t kBytes = 8ull << 20;
constexpr uint64_t kPage = 4096;

// Delivers on its own thread, as a link's reader does: deliver() runs the protocol under the
// receiver's lock and may send back, so calling it from inside send() would deadlock.
struct Wire : CoherenceTransport {
  std::array<CoherentMemory*, 2> hosts{};
  std::atomic<uint64_t> data_frames{0};
  std::atomic<bool> lose_all{false};  // a partition: every message is lost
  std::mutex mu;
  std::condition_variable cv;
  std::deque<CoherenceMessage> queue;
  bool done = false;
  std::thread courier{[this] {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return done || !queue.empty(); });
      if (queue.empty()) return;
      CoherenceMessage m = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      hosts.at(m.to)->deliver(std::move(m));
      lock.lock();
    }
  }};
  ~Wire() override { stop(); }
  void stop() {
    {
      std::lock_guard lock(mu);
      done = true;
    }
    cv.notify_all();
    if (courier.joinable()) courier.join();
  }
  Status send(const CoherenceMessage& m) override {
    if (m.payload == CoherenceMessage::Payload::kData) ++data_frames;
    if (lose_all) return {};
    std::lock_guard lock(mu);
    queue.push_back(m);
    cv.notify_all();
    return {};
  }
};

class TwoHosts : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) {
      void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      ASSERT_NE(p, MAP_FAILED);
      ram[i] = static_cast<uint8_t*>(p);
      CoherentMemoryConfig c;
      c.self = static_cast<NodeId>(i);
      c.home_of_piece = {0, 0, 1, 1};  // first 4 MiB homed on host 0, the rest on host 1
      c.pool_bytes = 4ull << 20;
      c.budget_bytes = budget[i];
      c.group_window_ns = group_window_ns;
      auto m = CoherentMemory::create(ram[i], kBytes, c, wire, [this](const Error& e) {
        std::lock_guard lock(fatal_mu);
        fatal = e.message();
      });
      if (!m.ok() && m.error().message().find("not permitted") != std::string::npos)
        GTEST_SKIP() << "userfaultfd not permitted here: " << m.error().message();
      ASSERT_TRUE(m.ok()) << m.error().message();
      mem[i] = std::move(*m);
      wire.hosts[i] = mem[i].get();
    }
  }
  void TearDown() override {
    wire.stop();  // before the hosts go: nothing is delivered to a destroyed host
    for (auto& m : mem) m.reset();
    for (auto* r : ram)
      if (r) munmap(r, kBytes);
    EXPECT_EQ(fatal, "");
  }
  // Runs `f` on a thread (a fault blocks the thread until the coherence thread serves it).
  template <class F>
  static void on_thread(F f) {
    std::thread t(f);
    t.join();
  }

  std::string take_fatal() {
    std::lock_guard lock(fatal_mu);
    return std::exchange(fatal, "");
  }

  Wire wire;
  std::array<uint64_t, 2> budget{};
  uint64_t group_window_ns = 0;  // the default
  std::array<uint8_t*, 2> ram{};
  std::array<std::unique_ptr<CoherentMemory>, 2> mem;
  std::mutex fatal_mu;
  std::string fatal;
};

TEST_F(TwoHosts, DormantPagesReadZeroAndNoPageCrossesTheWire) {
  uint64_t sum = 0;
  on_thread([&] {
    for (uint64_t off = 0; off < kBytes; off += kPage) sum += ram[1][off];  // both homes
  });
  // Host 0 writes its own pages that host 1 has read-only copies of: they were never written,
  // so the invalidations and grants carry no page either.
  on_thread([&] {
    for (uint64_t off = 0; off < kBytes / 2; off += 16 * kPage) ram[0][off] = 1;
  });
  EXPECT_EQ(sum, 0u);
  EXPECT_EQ(wire.data_frames.load(), 0u);
  EXPECT_EQ(mem[0]->stats().page_bytes_sent + mem[1]->stats().page_bytes_sent, 0u);
  // Host 1's reads of its own half needed no message; of host 0's half, a zero grant each.
  EXPECT_EQ(mem[1]->stats().remote_dormant_pages.load(), (kBytes / 2) / kPage);
  EXPECT_GE(mem[1]->stats().local_dormant_pages.load(), (kBytes / 2) / kPage);
}

TEST_F(TwoHosts, WritesOnOneHostAreSeenOnTheOtherBothWays) {
  on_thread([&] {
    for (uint64_t off = 0; off < kBytes; off += 64 * kPage) std::memset(ram[0] + off, 0x5a, kPage);
  });
  on_thread([&] {
    for (uint64_t off = 0; off < kBytes; off += 64 * kPage) {
      EXPECT_EQ(ram[1][off], 0x5a);
      EXPECT_EQ(ram[1][off + kPage - 1], 0x5a);
      ram[1][off + 7] = 0x11;  // upgrade the shared copy: host 0's copy is invalidated
    }
  });
  on_thread([&] {
    for (uint64_t off = 0; off < kBytes; off += 64 * kPage) {
      EXPECT_EQ(ram[0][off + 7], 0x11);
      EXPECT_EQ(ram[0][off + 8], 0x5a);
    }
  });
  EXPECT_GT(wire.data_frames.load(), 0u);
  EXPECT_GT(mem[1]->stats().wp_faults.load(), 0u);
}

TEST_F(TwoHosts, ConcurrentAtomicIncrementsFromBothHostsAreExact) {
  constexpr uint64_t kPerThread = 200000;
  // Two counters on one page homed on host 1, and one on a page homed on host 0.
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
  on_thread([&] { total = a1[0] + a1[1] + a0[0] + a0[1]; });
  EXPECT_EQ(total, 4 * kPerThread);
  auto lat = mem[0]->take_latencies();
  EXPECT_GT(lat.write_us.size() + lat.read_us.size(), 0u);
}

// A window far longer than the test, so that a slow machine (sanitizers, a loaded CI) cannot
// let the first page taken fall out of it before host 0 faults on it again.
class TwoHostsWithALongGroupWindow : public TwoHosts {
 protected:
  TwoHostsWithALongGroupWindow() { group_window_ns = 60'000'000'000; }
};

TEST_F(TwoHostsWithALongGroupWindow, PagesTakenTogetherComeBackTogether) {
  // Eight pages, some homed on each host, written on host 0, then taken by host 1's writes.
  std::vector<uint64_t> offsets;
  for (uint64_t i = 0; i < 4; ++i) offsets.push_back((1ull << 20) + i * 3 * kPage);
  for (uint64_t i = 0; i < 4; ++i) offsets.push_back((5ull << 20) + i * 5 * kPage);
  on_thread([&] {
    for (uint64_t off : offsets) ram[0][off] = 1;
  });
  on_thread([&] {
    for (uint64_t off : offsets) ram[1][off] = 2;
  });
  // Host 0 writes the first one again: the other seven come with it, in one go.
  on_thread([&] { ram[0][offsets[0]] = 3; });
  EXPECT_EQ(mem[0]->stats().group_pages_asked.load(), offsets.size() - 1);
  for (int i = 0; i < 1000 && !mem[0]->quiet().quiet; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const uint64_t faults = mem[0]->stats().faults;
  on_thread([&] {
    for (uint64_t off : offsets) EXPECT_EQ(ram[0][off], off == offsets[0] ? 3 : 2);
    for (uint64_t off : offsets) ram[0][off] = 4;
  });
  EXPECT_EQ(mem[0]->stats().faults.load(), faults);  // all of them were here, writable
  // Host 1 reads them back as host 0 left them.
  on_thread([&] {
    for (uint64_t off : offsets) EXPECT_EQ(ram[1][off], 4);
  });
}

TEST_F(TwoHosts, ADiscardTakesEveryCopyAwayAndThePagesReadZero) {
  // Host 1 writes pages of both homes; host 0 reads some of them (shared copies on both).
  on_thread([&] {
    for (uint64_t off = 0; off < kBytes; off += 8 * kPage) std::memset(ram[1] + off, 0x77, 64);
  });
  on_thread([&] {
    for (uint64_t off = 0; off < kBytes; off += 16 * kPage) EXPECT_EQ(ram[0][off], 0x77);
  });
  const uint64_t mapped_before = mem[0]->mapped_pages() + mem[1]->mapped_pages();
  ASSERT_GT(mapped_before, 0u);
  ASSERT_TRUE(mem[0]->discard(0, kBytes).ok());
  // Every copy is gone on both hosts, back into the pools.
  EXPECT_EQ(mem[0]->mapped_pages(), 0u);
  EXPECT_EQ(mem[1]->mapped_pages(), 0u);
  EXPECT_GT(mem[0]->stats().pages_given_up + mem[1]->stats().pages_given_up, 0u);
  uint64_t nonzero = 0;
  on_thread([&] {
    for (uint64_t off = 0; off < kBytes; off += 8 * kPage) nonzero += ram[1][off] != 0;
    for (uint64_t off = 0; off < kBytes; off += 8 * kPage) nonzero += ram[0][off] != 0;
  });
  EXPECT_EQ(nonzero, 0u);
  EXPECT_FALSE(mem[0]->discard(1, kPage).ok());       // not page-aligned
  EXPECT_FALSE(mem[0]->discard(kBytes, kPage).ok());  // outside guest RAM
}

TEST_F(TwoHosts, AFaultWaitingOnALostHostIsSeenAsStuck) {
  EXPECT_EQ(mem[1]->stuck_ns(), 0u);
  wire.lose_all = true;
  // A read of a page homed on host 0: the request is lost, the thread waits in the kernel.
  std::thread reader([&] { (void)*static_cast<volatile uint8_t*>(ram[1] + kPage); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_GE(mem[1]->stuck_ns(), 250'000'000u);
  EXPECT_EQ(mem[0]->stuck_ns(), 0u);
  mem[1]->stop();  // the kernel serves the waiter from here on
  reader.join();
}

class TwoHostsOneWithABudget : public TwoHosts {
 protected:
  TwoHostsOneWithABudget() { budget[1] = 6ull << 20; }  // its 4 MiB pool + 2 MiB of pages
};

TEST_F(TwoHostsOneWithABudget, PagesFromTheOtherHostBeyondTheBudgetStopWithTheNumbers) {
  std::atomic<bool> done{false};
  // Reads of host 0's half arrive as zero grants: each is a page of host 1's memory.
  std::thread reader([&] {
    uint64_t sum = 0;
    for (uint64_t off = 0; off < kBytes / 2; off += kPage) sum += ram[1][off];
    EXPECT_EQ(sum, 0u);
    done = true;
  });
  std::string why;
  for (int i = 0; i < 1000 && why.empty() && !done; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::lock_guard lock(fatal_mu);
    why = fatal;
  }
  mem[1]->stop();  // releases the reader the budget stopped
  reader.join();
  EXPECT_NE(take_fatal().find("memory budget of 6 MiB exhausted"), std::string::npos) << why;
  EXPECT_LE(mem[1]->mapped_pages() * kPage, 6ull << 20);
}

}  // namespace
}  // namespace shoal

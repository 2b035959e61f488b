// RdmaLink on a real verbs device: run inside the emulated test machine with soft-RoCE
// (scripts/test-vm --rdma, ctest's TestVm.Rdma), where 127.1.0.1 and 127.1.0.2 sit on the
// device's network interface. Without a device every test skips with one line saying so.
#include "net/rdma_link.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include "rdma/rdma_test_support.hpp"
#include "shoal/clock.hpp"

namespace shoal::net {
namespace {

using test::kRdmaAddress;
using test::LinkPair;

Frame numbered(uint32_t n, size_t bytes) {
  Frame f{MessageType::kPing, n, std::vector<uint8_t>(bytes)};
  for (size_t i = 0; i < bytes; ++i) f.payload[i] = static_cast<uint8_t>(n * 31 + i);
  return f;
}

// Joins a test's helper thread on every way out, a failed ASSERT's early return included (a
// joinable std::thread destroyed would end the whole binary).
// `stop` (closing a link) first, so that a thread blocked in receive() ends.
struct Joined {
  std::thread& t;
  std::function<void()> stop = {};
  ~Joined() {
    if (!t.joinable()) return;
    if (stop) stop();
    t.join();
  }
};

bool intact(const Frame& f, uint32_t n, size_t bytes) {
  return f.type == MessageType::kPing && f.request == n && f.payload == numbered(n, bytes).payload;
}

TEST(RdmaLink, FramesOfEverySizeArriveInOrderOverManyRoundsOfCredit) {
  auto pair = test::make_link_pair();
  if (!pair) GTEST_SKIP() << pair.error().message();
  constexpr uint32_t kFrames = 2000;
  auto size_of = [](uint32_t n) { return size_t{(n * 7919u) % 70000u}; };
  std::string send_error;
  std::thread sender([&] {
    for (uint32_t n = 0; n < kFrames && send_error.empty(); ++n)
      if (auto st = pair->a->send(numbered(n, size_of(n))); !st.ok())
        send_error = st.error().message();
  });
  Joined joined{sender};
  for (uint32_t n = 0; n < kFrames; ++n) {
    auto f = pair->b->receive();
    ASSERT_TRUE(f.ok()) << "frame " << n << ": " << f.error().message();
    ASSERT_TRUE(intact(*f, n, size_of(n))) << "frame " << n << " differs";
  }
  sender.join();
  EXPECT_EQ(send_error, "");
  const RdmaLinkStats s = pair->a->stats();
  // ~67 MiB through 32 slots of 32 KiB: the credit went round 60 times or more.
  EXPECT_GT(s.sends, 60u * 32);
  EXPECT_GT(pair->b->stats().credit_writes, 60u);
}

TEST(RdmaLink, TheLargestFrameArrivesWholeAndALargerOneIsRefused) {
  auto pair = test::make_link_pair();
  if (!pair) GTEST_SKIP() << pair.error().message();
  ASSERT_TRUE(pair->a->send(numbered(7, kMaxPayload)).ok());
  auto f = pair->b->receive();
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_TRUE(intact(*f, 7, kMaxPayload));
  auto s = pair->a->send(numbered(8, kMaxPayload + 1));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("exceeds the limit"), std::string::npos);
  // The link goes on.
  ASSERT_TRUE(pair->b->send(numbered(9, 10)).ok());
  auto g = pair->a->receive();
  ASSERT_TRUE(g.ok()) << g.error().message();
  EXPECT_TRUE(intact(*g, 9, 10));
}

TEST(RdmaLink, ABurstWaitsForCreditWhileTheReceiverDoesNotRead) {
  auto pair = test::make_link_pair();
  if (!pair) GTEST_SKIP() << pair.error().message();
  // 16 MiB while nobody reads: 16 times what the receiver has posted. Without credit the
  // SENDs would find no receive slot, and with rnr_retry 0 the link would break.
  constexpr uint32_t kFrames = 256;
  for (uint32_t n = 0; n < kFrames; ++n) ASSERT_TRUE(pair->a->send(numbered(n, 65536)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_GT(pair->a->stats().credit_waits, 0u);
  EXPECT_LE(pair->a->stats().sends, 32u + 4) << "more SENDs than the receiver had slots";
  for (uint32_t n = 0; n < kFrames; ++n) {
    auto f = pair->b->receive();
    ASSERT_TRUE(f.ok()) << "frame " << n << ": " << f.error().message();
    ASSERT_TRUE(intact(*f, n, 65536));
  }
}

TEST(RdmaLink, BothWaysAtOnceWithRepliesFromTheReaderThreads) {
  auto pair = test::make_link_pair();
  if (!pair) GTEST_SKIP() << pair.error().message();
  // Each side's reader answers every request on the same link: the coherence protocol's
  // pattern (a reply sent from a link's reader thread), which must not deadlock on credit.
  constexpr uint32_t kRequests = 2000;
  auto echo = [](RdmaLink* l) {
    for (;;) {
      auto f = l->receive();
      if (!f || f->type == MessageType::kBye) return;
      if (f->type == MessageType::kPing)
        (void)l->send(Frame{MessageType::kPong, f->request, f->payload});
    }
  };
  std::thread eb([&] { echo(pair->b.get()); });
  Joined joined_echo{eb, [&] { pair->b->close(); }};
  std::atomic<uint32_t> pongs = 0;
  std::thread reader([&] {
    while (pongs < kRequests) {
      auto f = pair->a->receive();
      if (!f) return;
      if (f->type == MessageType::kPong && f->request == pongs) ++pongs;
    }
  });
  Joined joined_reader{reader, [&] { pair->a->close(); }};
  for (uint32_t n = 0; n < kRequests; ++n) ASSERT_TRUE(pair->a->send(numbered(n, 4096 + 16)).ok());
  reader.join();
  EXPECT_EQ(pongs.load(), kRequests);
  ASSERT_TRUE(pair->a->send(Frame{MessageType::kBye, 0, {}}).ok());
  eb.join();
}

TEST(RdmaLink, UnsealedFramesWhenBothEndsSaySoAndARefusalWhenTheyDisagree) {
  RdmaLinkConfig plain;
  plain.sealed = false;
  // Byte counts tell sealed from not: a sealed frame carries its inner type, request and tag.
  for (bool sealed : {false, true}) {
    test::PairOptions o;
    o.a.sealed = o.b.sealed = sealed;
    o.liveness = std::chrono::milliseconds(0);  // no heartbeats among the counted bytes
    auto pair = test::make_link_pair(o);
    if (!pair) GTEST_SKIP() << pair.error().message();
    const uint64_t before = pair->a->stats().bytes;
    ASSERT_TRUE(pair->a->send(numbered(1, 5000)).ok());
    auto f = pair->b->receive();
    ASSERT_TRUE(f.ok()) << f.error().message();
    EXPECT_TRUE(intact(*f, 1, 5000));
    EXPECT_EQ(pair->a->stats().bytes - before, sealed ? 16u + 6 + 5000 + 16 : 16u + 5000);
  }
  test::PairOptions mixed_options;
  mixed_options.b = plain;
  auto mixed = test::make_link_pair(mixed_options);
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.error().message().find("must agree"), std::string::npos)
      << mixed.error().message();
}

// The upgrade starts only on a link the handshake authenticated: the refusal is the
// handshake's, and no RDMA endpoint was sent.
TEST(RdmaLink, AWrongSecretIsRefusedInTheHandshakeBeforeAnyUpgrade) {
  test::PairOptions o;
  o.secret_b = "another secret";
  auto pair = test::make_link_pair(o);
  if (!pair && pair.error().message().find("no RDMA device") != std::string::npos)
    GTEST_SKIP() << pair.error().message();
  ASSERT_FALSE(pair.ok());
  EXPECT_NE(pair.error().message().find("wrong pod secret"), std::string::npos)
      << pair.error().message();
}

TEST(RdmaLink, AFinishedEndIsReadToTheEndAndStillHearsThePeer) {
  auto pair = test::make_link_pair();
  if (!pair) GTEST_SKIP() << pair.error().message();
  // As TCP's half-close: a's finish ends a's direction only. b reads meanwhile (2 MB is
  // twice what a's credit covers).
  std::string read_error;
  std::thread reader([&] {
    for (uint32_t n = 0; n < 100 && read_error.empty(); ++n) {
      auto f = pair->b->receive();
      if (!f.ok())
        read_error = "frame " + std::to_string(n) + ": " + f.error().message();
      else if (!intact(*f, n, 20000))
        read_error = "frame " + std::to_string(n) + " differs";
    }
  });
  Joined joined{reader, [&] { pair->b->close(); }};
  for (uint32_t n = 0; n < 100; ++n) ASSERT_TRUE(pair->a->send(numbered(n, 20000)).ok());
  pair->a->finish(std::chrono::milliseconds(20000));
  auto late = pair->a->send(numbered(100, 10));
  reader.join();
  ASSERT_EQ(read_error, "");
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.error().message().find("finished sending"), std::string::npos)
      << late.error().message();
  auto end = pair->b->receive();
  ASSERT_FALSE(end.ok());
  EXPECT_EQ(end.error().message(), "peer closed the connection");
  ASSERT_TRUE(pair->b->send(numbered(7, 3000)).ok());
  auto back = pair->a->receive();
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_TRUE(intact(*back, 7, 3000));
}

TEST(RdmaLink, FramesSentBeforeFinishAreAllReadBeforeTheEnd) {
  auto pair = test::make_link_pair();
  if (!pair) GTEST_SKIP() << pair.error().message();
  // Less than a's credit, and b reads only after a finished: the end of stream must come
  // after every frame, never instead of the ones still waiting in b's completion queue.
  for (uint32_t n = 0; n < 20; ++n) ASSERT_TRUE(pair->a->send(numbered(n, 20000)).ok());
  pair->a->finish(std::chrono::milliseconds(20000));
  uint32_t read = 0;
  Result<Frame> f = Frame{};
  while ((f = pair->b->receive()).ok()) {
    ASSERT_TRUE(intact(*f, read, 20000)) << "frame " << read;
    ++read;
  }
  EXPECT_EQ(read, 20u);
  EXPECT_EQ(f.error().message(), "peer closed the connection");
  // And it stays ended.
  EXPECT_EQ(pair->b->receive().error().message(), "peer closed the connection");
}

TEST(RdmaLink, EndsWithDifferentSlotsSendAtMostThePeersSlotAndKeepOrder) {
  test::PairOptions o;
  o.a.slots = 2;  // the fewest: two credits, and credit WRITEs capped in flight
  o.a.slot_bytes = 4096;
  auto pair = test::make_link_pair(o);
  if (!pair) GTEST_SKIP() << pair.error().message();
  constexpr uint32_t kFrames = 300;
  auto size_of = [](uint32_t n) { return size_t{(n * 4099u) % 40000u}; };
  auto run = [&](RdmaLink* from, RdmaLink* to, std::string* error) {
    std::thread sender([&] {
      for (uint32_t n = 0; n < kFrames; ++n)
        if (!from->send(numbered(n, size_of(n))).ok()) return;
    });
    for (uint32_t n = 0; n < kFrames && error->empty(); ++n) {
      auto f = to->receive();
      if (!f.ok())
        *error = "frame " + std::to_string(n) + ": " + f.error().message();
      else if (!intact(*f, n, size_of(n)))
        *error = "frame " + std::to_string(n) + " differs";
    }
    sender.join();
  };
  std::string ab, ba;
  std::thread one([&] { run(pair->a.get(), pair->b.get(), &ab); });
  Joined joined{one, [&] {
                  pair->a->close();
                  pair->b->close();
                }};
  run(pair->b.get(), pair->a.get(), &ba);
  one.join();
  EXPECT_EQ(ab, "");
  EXPECT_EQ(ba, "");
  // Both ways in 4 KiB SENDs (a's slots; b takes the smaller): ~6 MB each way.
  EXPECT_GT(pair->a->stats().sends, 1000u);
  EXPECT_GT(pair->b->stats().sends, 1000u);
}

TEST(RdmaLink, AnAddressWithoutARoceGidIsRefusedNamingIt) {
  if (auto d = test::rdma_device(); !d) GTEST_SKIP() << d.error().message();
  // 127.0.0.1 is on lo, not on the device's interface: TCP works, RoCE has no GID for it.
  test::PairOptions o;
  o.address = "127.0.0.1";
  auto pair = test::make_link_pair(o);
  ASSERT_FALSE(pair.ok());
  EXPECT_NE(pair.error().message().find("has no RoCE v2 GID for 127.0.0.1"), std::string::npos)
      << pair.error().message();
}

TEST(RdmaLink, APeerThatDiesMidTransferEndsTheLinkWithinSeconds) {
  auto device = test::rdma_device();
  if (!device) GTEST_SKIP() << device.error().message();
  auto listener = TcpListener::listen(kRdmaAddress, 0);
  ASSERT_TRUE(listener.ok()) << listener.error().message();
  // The peer is another process (this binary, as `--peer`), killed with SIGKILL while it sends
  // 256 KiB frames as fast as credit lets it.
  const std::string port = std::to_string((*listener)->port());
  char self[] = "/proc/self/exe";
  char peer_flag[] = "--peer";
  std::string port_arg = port;
  char* argv[] = {self, peer_flag, port_arg.data(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, environ), 0);
  auto socket = (*listener)->accept();
  ASSERT_TRUE(socket.ok()) << socket.error().message();
  auto tcp = TcpLink::accept(std::move(*socket), test::identity("b"));
  ASSERT_TRUE(tcp.ok()) << tcp.error().message();
  auto link = RdmaLink::upgrade(std::shared_ptr<TcpLink>(std::move(*tcp)), *device, false, {});
  ASSERT_TRUE(link.ok()) << link.error().message();
  for (int n = 0; n < 20; ++n) {
    auto f = (*link)->receive();
    ASSERT_TRUE(f.ok()) << f.error().message();
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  const uint64_t killed = monotonic_ns();
  Result<Frame> f = Frame{};
  while ((f = (*link)->receive()).ok()) {
  }
  const double seconds = static_cast<double>(monotonic_ns() - killed) / 1e9;
  EXPECT_LT(seconds, 5.0);
  EXPECT_NE(f.error().message().find("peer closed the connection"), std::string::npos)
      << f.error().message();
  // Sending fails too: the side channel's end says the peer is gone.
  Status s;
  for (int i = 0; i < 2000 && s.ok(); ++i) {
    s = (*link)->send(numbered(1, 1000));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_FALSE(s.ok()) << "sends to a dead peer kept succeeding";
}

}  // namespace
}  // namespace shoal::net

// `--peer PORT`: the process the death test kills (connects to 127.1.0.1:PORT and sends until
// it is killed).
int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--peer") == 0)
    return shoal::test::run_sending_peer(static_cast<uint16_t>(std::atoi(argv[2])));
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

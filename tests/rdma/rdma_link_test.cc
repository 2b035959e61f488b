// RdmaLink on a real verbs device: run inside the emulated test machine with soft-RoCE
// (scripts/test-vm --rdma, ctest's TestVm.Rdma), where 127.1.0.1 and 127.1.0.2 sit on the
// device's network interface. Without a device every test skips with one line saying so.
#include "net/rdma_link.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
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

bool intact(const Frame& f, uint32_t n, size_t bytes) {
  return f.type == MessageType::kPing && f.request == n && f.payload == numbered(n, bytes).payload;
}

TEST(RdmaLink, FramesOfEverySizeArriveInOrderOverManyRoundsOfCredit) {
  auto pair = test::make_link_pair();
  if (!pair) GTEST_SKIP() << pair.error().message();
  constexpr uint32_t kFrames = 3000;
  auto size_of = [](uint32_t n) { return size_t{(n * 7919u) % 70000u}; };
  std::thread sender([&] {
    for (uint32_t n = 0; n < kFrames; ++n) ASSERT_TRUE(pair->a->send(numbered(n, size_of(n))).ok());
  });
  for (uint32_t n = 0; n < kFrames; ++n) {
    auto f = pair->b->receive();
    ASSERT_TRUE(f.ok()) << "frame " << n << ": " << f.error().message();
    ASSERT_TRUE(intact(*f, n, size_of(n))) << "frame " << n << " differs";
  }
  sender.join();
  const RdmaLinkStats s = pair->a->stats();
  // ~100 MiB through 32 slots of 32 KiB: the credit went round many times.
  EXPECT_GT(s.sends, 100u * 32);
  EXPECT_GT(pair->b->stats().credit_writes, 100u);
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
  uint32_t pongs = 0;
  std::thread reader([&] {
    while (pongs < kRequests) {
      auto f = pair->a->receive();
      if (!f) return;
      if (f->type == MessageType::kPong && f->request == pongs) ++pongs;
    }
  });
  for (uint32_t n = 0; n < kRequests; ++n) ASSERT_TRUE(pair->a->send(numbered(n, 4096 + 16)).ok());
  reader.join();
  EXPECT_EQ(pongs, kRequests);
  ASSERT_TRUE(pair->a->send(Frame{MessageType::kBye, 0, {}}).ok());
  eb.join();
}

TEST(RdmaLink, UnsealedFramesWhenBothEndsSaySoAndARefusalWhenTheyDisagree) {
  RdmaLinkConfig plain;
  plain.sealed = false;
  auto pair = test::make_link_pair(plain, plain);
  if (!pair) GTEST_SKIP() << pair.error().message();
  ASSERT_TRUE(pair->a->send(numbered(1, 5000)).ok());
  auto f = pair->b->receive();
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_TRUE(intact(*f, 1, 5000));
  auto mixed = test::make_link_pair(RdmaLinkConfig{}, plain);
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.error().message().find("must agree"), std::string::npos)
      << mixed.error().message();
}

TEST(RdmaLink, AWrongSecretIsRefusedBeforeAnyQueuePairExists) {
  auto pair = test::make_link_pair(RdmaLinkConfig{}, RdmaLinkConfig{}, "another secret");
  if (!pair && pair.error().message().find("no RDMA device") != std::string::npos)
    GTEST_SKIP() << pair.error().message();
  ASSERT_FALSE(pair.ok());
  EXPECT_NE(pair.error().message().find("wrong pod secret"), std::string::npos)
      << pair.error().message();
}

TEST(RdmaLink, AnAddressWithoutARoceGidIsRefusedNamingIt) {
  if (auto d = test::rdma_device(); !d) GTEST_SKIP() << d.error().message();
  // 127.0.0.1 is on lo, not on the device's interface: TCP works, RoCE has no GID for it.
  auto pair = test::make_link_pair({}, {}, "rdma test secret", "127.0.0.1");
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
  // Sending fails too, at the latest once the queue pair gives up on the dead peer.
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

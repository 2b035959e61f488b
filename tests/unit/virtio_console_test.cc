// virtio-console behind the virtio-mmio transport, without KVM: a driver made of register
// writes and rings in guest RAM on one side, a Unix socket client on the other.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "devices/virtio_console.hpp"
#include "devices/virtio_console_control.hpp"
#include "devices/virtio_mmio.hpp"
#include "support/sanitized.hpp"
#include "support/virtio_test_driver.hpp"

namespace shoal {
namespace {

using test::VirtioTestDriver;
constexpr auto ring = &VirtioTestDriver::ring;
constexpr auto buffer = &VirtioTestDriver::buffer;

std::string socket_path() {
  return ::testing::TempDir() + "shoal-console-" + std::to_string(getpid());
}

std::unique_ptr<VirtioDevice> listen_or_fail(const std::string& path) {
  auto dev = VirtioConsole::listen(path);
  EXPECT_TRUE(dev.ok()) << (dev.ok() ? "" : dev.error().message());
  return dev.ok() ? std::move(*dev) : nullptr;
}

struct Channel : VirtioTestDriver {
  Channel() : VirtioTestDriver(listen_or_fail(socket_path())) {}
  void start() { VirtioTestDriver::start(0, 2); }
  void start_multiport() { VirtioTestDriver::start(kConsoleFMultiport, 4); }
  // Makes buffer `i` of queue `q` available: device-writable for the receive queue.
  void post(uint16_t q, uint16_t i, uint32_t len) { VirtioTestDriver::post(q, i, len, q == 0); }
  int connect() {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }
  std::string path = socket_path();
};

TEST(VirtioConsole, BytesGoBothWaysAndWaitForThePeer) {
  Channel c;
  struct stat st {};
  ASSERT_EQ(::stat(c.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(c.reg(0x8), 3u);
  c.start();
  ASSERT_EQ(c.reg(0x70) & 64, 0u);
  // The guest writes before anyone listens: the bytes wait in its queue.
  std::memcpy(c.host(buffer(1, 0), 5), "hello", 5);
  c.post(1, 0, 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto* tx_used = reinterpret_cast<const uint16_t*>(c.host(ring(1, 2) + 2, 2));
  EXPECT_EQ(__atomic_load_n(tx_used, __ATOMIC_ACQUIRE), 0);
  const int peer = c.connect();
  char got[16] = {};
  ASSERT_EQ(::read(peer, got, sizeof got), 5);
  EXPECT_EQ(std::string(got, 5), "hello");
  EXPECT_EQ(c.used(1, 1), std::optional<uint32_t>(0));
  // The peer's bytes fill the guest's receive buffers, split across two.
  c.post(0, 0, 4);
  c.post(0, 1, 64);
  ASSERT_EQ(::write(peer, "0123456789", 10), 10);
  ASSERT_EQ(c.used(0, 2), std::optional<uint32_t>(6));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(c.host(buffer(0, 0), 4)), 4), "0123");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(c.host(buffer(0, 1), 6)), 6), "456789");
  const ChannelCounters n = static_cast<const VirtioConsole&>(c.transport().device()).counters();
  EXPECT_EQ(n.to_guest, 10u);
  EXPECT_EQ(n.from_guest, 5u);
  EXPECT_EQ(n.peers, 1u);
  ::close(peer);
}

TEST(VirtioConsole, APeerThatLeavesEndsItsStreamNotShoal) {
  Channel c;
  c.start();
  int peer = c.connect();
  ::close(peer);
  // The guest writes, maybe into the socket whose peer is gone (EPIPE for the device, not
  // SIGPIPE for the process), maybe before the device saw it go (then the bytes wait for the
  // next peer): either way the buffer comes back, and the next peer gets what comes next.
  std::memcpy(c.host(buffer(1, 0), 4), "lost", 4);
  c.post(1, 0, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  peer = c.connect();
  ASSERT_EQ(c.used(1, 1), std::optional<uint32_t>(0));
  std::memcpy(c.host(buffer(1, 1), 4), "kept", 4);
  c.post(1, 1, 4);
  std::string got;
  char b[8];
  while (got.size() < 4 || got.substr(got.size() - 4) != "kept") {
    const ssize_t n = ::read(peer, b, sizeof b);
    ASSERT_GT(n, 0) << "got '" << got << "'";
    got.append(b, static_cast<size_t>(n));
  }
  EXPECT_TRUE(got == "kept" || got == "lostkept") << got;
  ::close(peer);
}

TEST(VirtioConsole, AHugeTransmitChainNeedsAReset) {
  Channel c;
  c.start();
  const int peer = c.connect();
  // One chain of two 64 KiB descriptors: more than the device copies for one chain.
  uint8_t* d = c.host(ring(1, 0), 32);
  const uint64_t addr = 0x200000;
  const uint32_t len = 64 << 10;
  const uint16_t next_flag = 1, none = 0, one = 1;
  std::memcpy(d, &addr, 8);
  std::memcpy(d + 8, &len, 4);
  std::memcpy(d + 12, &next_flag, 2);
  std::memcpy(d + 14, &one, 2);
  std::memcpy(d + 16, &addr, 8);
  std::memcpy(d + 24, &len, 4);
  std::memcpy(d + 28, &none, 2);
  uint8_t* avail = c.host(ring(1, 1), 8);
  std::memcpy(avail + 4, &none, 2);
  __atomic_store_n(reinterpret_cast<uint16_t*>(avail + 2), one, __ATOMIC_RELEASE);
  c.set(0x50, 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((c.reg(0x70) & 64) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_NE(c.reg(0x70) & 64, 0u);
  ::close(peer);
}

// Out of descriptors, accept fails at once while the connection stays queued: the device
// waits 100 ms before it tries again instead of spinning (and logging) in a loop, and takes
// the peer once descriptors are back. (io_uring reads the limit when an accept is queued:
// the device queues the failing one after its first peer left.)
TEST(VirtioConsole, AnAcceptThatFailsIsRetriedLaterNotInALoop) {
  // The sanitizers' runtime needs descriptors of its own (UBSan's vptr check probes memory
  // through a pipe): with none left it reports a false "invalid vptr". The plain build runs it.
  if (test::kSanitized)
    GTEST_SKIP() << "skipped: the sanitizer runtime needs file descriptors this test takes away";
  Channel c;
  c.start();
  const auto& dev = static_cast<const VirtioConsole&>(c.transport().device());
  const int first = c.connect();
  while (dev.counters().peers == 0) std::this_thread::yield();
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, c.path.c_str(), sizeof a.sun_path - 1);
  const int peer = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(peer, 0);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = 3;  // below every descriptor but stdin, stdout and stderr: no new one
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  ::close(first);  // the device sees it go and queues the next accept under the low limit
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const int connected = ::connect(peer, reinterpret_cast<sockaddr*>(&a), sizeof a);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  const ChannelCounters during = dev.counters();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  ASSERT_EQ(connected, 0) << std::strerror(errno);
  EXPECT_GE(during.accept_failures, 1u) << "peers " << during.peers;
  EXPECT_LE(during.accept_failures, 5u);  // one per 100 ms; a spin makes thousands
  std::memcpy(c.host(buffer(1, 0), 2), "hi", 2);
  c.post(1, 0, 2);
  char got[2] = {};  // once a retry under the restored limit took the peer
  ASSERT_EQ(::read(peer, got, 2), 2);
  EXPECT_EQ(std::string(got, 2), "hi");
  EXPECT_EQ(dev.counters().peers, 2u);
  ::close(peer);
}

// MULTIPORT, as Linux drives it: the port is added (once), named and told whether the host
// side is open, as the peer comes and goes; the peer's bytes wait until the guest opens its
// end; a malformed control message is dropped, not fatal.
TEST(VirtioConsole, WithMultiportThePortIsNamedAndTheGuestLearnsWhenThePeerComesAndGoes) {
  Channel c;
  EXPECT_EQ(c.config(4), 1);  // max_nr_ports
  c.start_multiport();
  for (uint16_t i = 0; i < 8; ++i) c.VirtioTestDriver::post(2, i, 64, true);
  uint16_t sent = 0;
  auto send = [&](uint32_t id, uint16_t event, uint16_t value, uint32_t len = 8) {
    const std::vector<uint8_t> m = encode_console_control({id, event, value});
    std::memcpy(c.host(buffer(3, sent), 8), m.data(), 8);
    c.VirtioTestDriver::post(3, sent++, len, false);
  };
  // The k-th message to the driver (from 1), in control receive buffer k - 1.
  auto received = [&](uint16_t k, ConsoleControl want, const std::string& extra = "") {
    const auto len = c.used(2, k);
    ASSERT_EQ(len, std::optional<uint32_t>(8 + extra.size())) << "message " << k;
    const uint8_t* b = c.host(buffer(2, k - 1), *len);
    ConsoleControl got;
    std::memcpy(&got.id, b, 4);
    std::memcpy(&got.event, b + 4, 2);
    std::memcpy(&got.value, b + 6, 2);
    EXPECT_EQ(got.id, want.id) << "message " << k;
    EXPECT_EQ(got.event, want.event) << "message " << k;
    EXPECT_EQ(got.value, want.value) << "message " << k;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(b + 8), extra.size()), extra);
  };
  send(0, ConsoleControl::kDeviceReady, 1, 4);  // 4 bytes: dropped
  send(0, ConsoleControl::kDeviceReady, 1);
  received(1, {0, ConsoleControl::kDeviceAdd, 0});
  send(0, ConsoleControl::kDeviceReady, 1);  // again: the port exists, no second DEVICE_ADD
  send(0, ConsoleControl::kPortReady, 1);
  received(2, {0, ConsoleControl::kPortName, 1}, "shoal.channel");
  received(3, {0, ConsoleControl::kPortOpen, 0});  // nobody on the socket yet
  EXPECT_EQ(c.used(3, 4), std::optional<uint32_t>(0));
  EXPECT_EQ(c.reg(0x70) & 64, 0u) << "the short message made the device need a reset";
  const int peer = c.connect();
  received(4, {0, ConsoleControl::kPortOpen, 1});
  // The peer speaks first, before any program in the guest opened the port: Linux would throw
  // the bytes away, so they wait until the guest's PORT_OPEN.
  c.post(0, 0, 64);
  ASSERT_EQ(::write(peer, "early", 5), 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(c.used_count(0), 0) << "bytes went to a port the guest had not opened";
  send(0, ConsoleControl::kPortOpen, 1);
  ASSERT_EQ(c.used(0, 1), std::optional<uint32_t>(5));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(c.host(buffer(0, 0), 5)), 5), "early");
  std::memcpy(c.host(buffer(1, 0), 2), "hi", 2);
  c.post(1, 0, 2);
  char got[4] = {};
  ASSERT_EQ(::read(peer, got, sizeof got), 2);
  EXPECT_EQ(std::string(got, 2), "hi");
  ::close(peer);
  received(5, {0, ConsoleControl::kPortOpen, 0});
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(c.used_count(2), 5) << "one message per change, no more";
}

TEST(VirtioConsole, RefusesPathsThatAreNotSockets) {
  const std::string file = ::testing::TempDir() + "shoal-console-file-" + std::to_string(getpid());
  ASSERT_EQ(::close(::creat(file.c_str(), 0644)), 0);
  auto r = VirtioConsole::listen(file);
  ::unlink(file.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "--channel " + file + ": exists and is not a socket");
  EXPECT_FALSE(VirtioConsole::listen(std::string(200, 'x')).ok());
}

}  // namespace
}  // namespace shoal

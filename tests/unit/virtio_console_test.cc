// virtio-console behind the virtio-mmio transport, without KVM: a driver made of register
// writes and rings in guest RAM on one side, a Unix socket client on the other.
#include <fcntl.h>
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
#include "devices/virtio_mmio.hpp"

namespace shoal {
namespace {

// Rings of queue q at 0x10000 + q * 0x4000 (desc, +0x1000 avail, +0x2000 used), 16 entries;
// buffer i of queue q at 0x100000 + q * 0x10000 + i * 0x1000.
constexpr uint16_t kSize = 16;
uint64_t ring(uint16_t q, int part) {
  return 0x10000 + q * 0x4000ull + part * 0x1000ull;
}
uint64_t buffer(uint16_t q, uint16_t i) {
  return 0x100000 + q * 0x10000ull + i * 0x1000ull;
}

struct Channel {
  Channel() {
    path = ::testing::TempDir() + "shoal-console-" + std::to_string(getpid());
    auto r = GuestRam::reserve(4 << 20, 40);
    EXPECT_TRUE(r.ok());
    ram.emplace(std::move(*r));
    auto dev = VirtioConsole::listen(path);
    EXPECT_TRUE(dev.ok()) << (dev.ok() ? "" : dev.error().message());
    auto t = VirtioMmio::create(nullptr, *ram, 0xfeb00000, 16, std::move(*dev));
    EXPECT_TRUE(t.ok());
    transport = *t;
  }
  uint32_t reg(uint64_t off) {
    uint32_t v = 0;
    transport->read(off, {reinterpret_cast<uint8_t*>(&v), 4});
    return v;
  }
  void set(uint64_t off, uint32_t v) { transport->write(off, {reinterpret_cast<uint8_t*>(&v), 4}); }
  void start() {
    set(0x70, 0);
    set(0x70, 3);
    set(0x24, 1);
    set(0x20, 1);  // VIRTIO_F_VERSION_1
    set(0x70, 3 | 8);
    for (uint16_t q = 0; q < 2; ++q) {
      set(0x30, q);
      set(0x38, kSize);
      set(0x80, static_cast<uint32_t>(ring(q, 0)));
      set(0x90, static_cast<uint32_t>(ring(q, 1)));
      set(0xa0, static_cast<uint32_t>(ring(q, 2)));
      set(0x44, 1);
    }
    set(0x70, 3 | 8 | 4);
  }
  // Makes buffer `i` of queue `q` (len bytes, device-writable for the receive queue) available.
  void post(uint16_t q, uint16_t i, uint32_t len) {
    uint8_t* d = ram->host(ring(q, 0) + 16 * i, 16);
    const uint64_t addr = buffer(q, i);
    const uint16_t flags = q == 0 ? 2 : 0, next = 0;
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    uint8_t* avail = ram->host(ring(q, 1), 4 + 2 * kSize);
    std::memcpy(avail + 4 + 2 * (posted[q] % kSize), &i, 2);
    ++posted[q];
    __atomic_store_n(reinterpret_cast<uint16_t*>(avail + 2), posted[q], __ATOMIC_RELEASE);
    set(0x50, q);
  }
  // Waits until queue q's used ring has `count` entries; the last one's len.
  std::optional<uint32_t> used(uint16_t q, uint16_t count) {
    const auto* idx = reinterpret_cast<const uint16_t*>(ram->host(ring(q, 2) + 2, 2));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (__atomic_load_n(idx, __ATOMIC_ACQUIRE) < count)
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    uint32_t len;
    std::memcpy(&len, ram->host(ring(q, 2) + 4 + 8 * ((count - 1) % kSize) + 4, 4), 4);
    return len;
  }
  int connect() {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }
  std::string path;
  std::optional<GuestRam> ram;
  std::shared_ptr<VirtioMmio> transport;
  uint16_t posted[2] = {};
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
  std::memcpy(c.ram->host(buffer(1, 0), 5), "hello", 5);
  c.post(1, 0, 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto* tx_used = reinterpret_cast<const uint16_t*>(c.ram->host(ring(1, 2) + 2, 2));
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
  EXPECT_EQ(std::string(reinterpret_cast<char*>(c.ram->host(buffer(0, 0), 4)), 4), "0123");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(c.ram->host(buffer(0, 1), 6)), 6), "456789");
  const ChannelCounters n = static_cast<const VirtioConsole&>(c.transport->device()).counters();
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
  std::memcpy(c.ram->host(buffer(1, 0), 4), "lost", 4);
  c.post(1, 0, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  peer = c.connect();
  ASSERT_EQ(c.used(1, 1), std::optional<uint32_t>(0));
  std::memcpy(c.ram->host(buffer(1, 1), 4), "kept", 4);
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
  uint8_t* d = c.ram->host(ring(1, 0), 32);
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
  uint8_t* avail = c.ram->host(ring(1, 1), 8);
  std::memcpy(avail + 4, &none, 2);
  __atomic_store_n(reinterpret_cast<uint16_t*>(avail + 2), one, __ATOMIC_RELEASE);
  c.set(0x50, 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((c.reg(0x70) & 64) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_NE(c.reg(0x70) & 64, 0u);
  ::close(peer);
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

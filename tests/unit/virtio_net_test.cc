// virtio-net behind the virtio-mmio transport, without KVM: a driver made of register writes
// and rings in guest RAM on one side, a real tap interface on the other, in a network
// namespace of the test's own (root and /dev/net/tun needed; the test skips without them).
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "devices/virtio_net.hpp"
#include "support/virtio_test_driver.hpp"

namespace shoal {
namespace {

using test::VirtioTestDriver;

constexpr uint16_t kRx = 0, kTx = 1;
constexpr uint16_t kEtherType = 0x88b5;  // IEEE "local experimental": nothing else sends it
constexpr uint64_t kFMac = 1ull << 5, kFStatus = 1ull << 16;
const char* const kTapName = "shoaltest0";

// This thread in a fresh network namespace until the scope ends (threads it starts meanwhile,
// such as the device's worker, stay there).
class OwnNetns {
 public:
  OwnNetns() : back_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
    ok_ = back_ >= 0 && ::unshare(CLONE_NEWNET) == 0;
  }
  ~OwnNetns() {
    if (ok_) {
      EXPECT_EQ(::setns(back_, CLONE_NEWNET), 0);
    }
    if (back_ >= 0) ::close(back_);
  }
  bool ok() const { return ok_; }

 private:
  int back_;
  bool ok_ = false;
};

std::string why_no_tap() {
  if (::geteuid() != 0) return "needs root (a tap in a network namespace of its own)";
  const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string("needs /dev/net/tun: ") + std::strerror(errno);
  ::close(fd);
  return "";
}

// The host's end: a packet socket on the tap for kEtherType frames.
struct HostSide {
  explicit HostSide(const char* tap) : index(static_cast<int>(if_nametoindex(tap))) {
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, tap, IFNAMSIZ - 1);
    ifr.ifr_mtu = 4000;  // room for a frame larger than the guest's buffers
    EXPECT_EQ(::ioctl(s, SIOCSIFMTU, &ifr), 0) << std::strerror(errno);
    EXPECT_EQ(::ioctl(s, SIOCGIFFLAGS, &ifr), 0);
    ifr.ifr_flags |= IFF_UP;
    EXPECT_EQ(::ioctl(s, SIOCSIFFLAGS, &ifr), 0) << std::strerror(errno);
    ::close(s);
    fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kEtherType));
    sockaddr_ll a{};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(kEtherType);
    a.sll_ifindex = index;
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~HostSide() { ::close(fd); }
  void send(const std::string& frame) {
    sockaddr_ll a{};
    a.sll_family = AF_PACKET;
    a.sll_ifindex = index;
    a.sll_halen = 6;
    EXPECT_EQ(
        ::sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a),
        static_cast<ssize_t>(frame.size()))
        << std::strerror(errno);
  }
  int index;
  int fd = -1;
};

// An Ethernet frame of kEtherType from `src` to everyone, `payload` after the header.
std::string frame(const uint8_t* src, const std::string& payload) {
  std::string f(14, '\0');
  std::memset(f.data(), 0xff, 6);
  std::memcpy(f.data() + 6, src, 6);
  f[12] = static_cast<char>(kEtherType >> 8);
  f[13] = static_cast<char>(kEtherType & 0xff);
  return f + payload;
}

TEST(VirtioNet, FramesGoBothWaysThroughARealTap) {
  if (const std::string why = why_no_tap(); !why.empty()) GTEST_SKIP() << "skipped: " << why;
  OwnNetns ns;
  ASSERT_TRUE(ns.ok()) << std::strerror(errno);
  NetOptions options;
  options.tap = kTapName;
  auto dev = VirtioNet::open(options, default_mac(0));
  ASSERT_TRUE(dev.ok()) << dev.error().message();
  VirtioTestDriver d(std::move(*dev));
  EXPECT_EQ(d.reg(0x8), 1u);  // DeviceID: network card
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(d.config(i), mac[i]);
  EXPECT_EQ(d.config(6), 1u);  // VIRTIO_NET_S_LINK_UP
  d.start(kFMac | kFStatus, 2);
  ASSERT_EQ(d.reg(0x70) & 64, 0u);
  HostSide host(kTapName);

  // Guest to host: a zero header (no offload) and the frame, in one buffer.
  const std::string out = frame(mac, "hello from the guest");
  std::memset(d.host(VirtioTestDriver::buffer(kTx, 0), 12), 0, 12);
  std::memcpy(d.host(VirtioTestDriver::buffer(kTx, 0) + 12, out.size()), out.data(), out.size());
  d.post(kTx, 0, static_cast<uint32_t>(12 + out.size()), false);
  char got[5000];
  ssize_t n = ::recv(host.fd, got, sizeof got, 0);
  ASSERT_EQ(n, static_cast<ssize_t>(out.size())) << std::strerror(errno);
  EXPECT_EQ(std::string(got, static_cast<size_t>(n)), out);
  EXPECT_EQ(d.used(kTx, 1), std::optional<uint32_t>(0));

  // Host to guest: the frame lands in one receive buffer behind a header that says so. The
  // host kernel may send frames of its own first (IPv6 neighbour discovery): they are skipped.
  for (uint16_t i = 0; i < 8; ++i) d.post(kRx, i, 2048, true);
  const uint8_t peer[6] = {0x02, 0, 0, 0, 0, 7};
  const std::string in = frame(peer, std::string(1000, 'x'));
  host.send(in);
  bool found = false;
  for (uint16_t seen = 1; seen <= 8 && !found; ++seen) {
    const auto len = d.used(kRx, seen);
    ASSERT_TRUE(len.has_value()) << "no frame reached the guest";
    const uint16_t id = d.host(VirtioTestDriver::ring(kRx, 2) + 4 + 8 * (seen - 1), 2)[0];
    const uint8_t* b = d.host(VirtioTestDriver::buffer(kRx, id), 2048);
    if (*len != 12 + in.size() || std::memcmp(b + 12, in.data(), in.size()) != 0) continue;
    found = true;
    EXPECT_EQ(b[0], 0u);               // flags: no checksum note without GUEST_CSUM
    EXPECT_EQ(b[10] | b[11] << 8, 1);  // num_buffers
  }
  EXPECT_TRUE(found);

  // A frame larger than the guest's buffers is dropped; the chain comes back empty.
  const uint16_t before = d.used_count(kRx);
  host.send(frame(peer, std::string(3000, 'y')));
  bool dropped = false;
  for (uint16_t seen = before + 1; seen <= 8 && !dropped; ++seen) {
    const auto len = d.used(kRx, seen);
    ASSERT_TRUE(len.has_value()) << "the large frame left no trace";
    dropped = *len == 0;
  }
  EXPECT_TRUE(dropped);
}

TEST(VirtioNet, BadOptionsAndNamesAreRefusedWithTheField) {
  auto n = parse_net_option("tap=t0,mac=02:00:00:00:00:01");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->tap, "t0");
  EXPECT_TRUE(n->mac_given);
  EXPECT_FALSE(parse_net_option("tap=").ok());
  EXPECT_FALSE(parse_net_option("tap=a,tap=b").ok());
  EXPECT_FALSE(parse_net_option("mac=02:00:00:00:00:01").ok());
  EXPECT_FALSE(parse_net_option("tap=t0,mac=00:00:00:00:00:00").ok());
  EXPECT_FALSE(parse_net_option("tap=t0,mac=02:00:00:00:00:01x").ok());
  EXPECT_FALSE(parse_net_option("tap=t0,queues=2").ok());
  NetOptions o;
  o.tap = std::string(16, 'x');
  auto r = VirtioNet::open(o, default_mac(0));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("--net tap=" + o.tap + ": an interface name is 1 to 15"),
            std::string::npos)
      << r.error().message();
}

}  // namespace
}  // namespace shoal

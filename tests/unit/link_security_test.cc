// Live links through a man-in-the-middle proxy that reads, changes, replays, reorders and
// injects frames; and heartbeats: a silent peer is lost, a busy reader is not.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "net/tcp_link.hpp"

namespace shoal::net {
namespace {

using std::chrono::milliseconds;
using Frames = std::vector<std::vector<uint8_t>>;

LinkIdentity identity(const char* name) {
  const char* key = "0123456789abcdef-pod";
  return LinkIdentity{name, std::vector<uint8_t>(key, key + std::strlen(key)), milliseconds(3000)};
}

bool read_all(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Sits between a client and a server on loopback. Client-to-server traffic goes frame by frame
// through `edit` (index 0, 1 are the handshake's HELLO and AUTH), which returns what to forward
// instead; the bodies of the frames after the handshake are recorded. Server-to-client bytes pass
// unchanged.
class Proxy {
 public:
  using Edit = std::function<Frames(size_t, std::vector<uint8_t>)>;
  Proxy(uint16_t target, Edit edit) : edit_(std::move(edit)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 1);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, target] { run(target); });
  }
  ~Proxy() {
    for (int fd : {listen_fd_, client_fd_, server_fd_})
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    if (back_.joinable()) back_.join();
    for (int fd : {listen_fd_, client_fd_, server_fd_})
      if (fd >= 0) ::close(fd);
  }
  uint16_t port() const { return port_; }
  std::vector<uint8_t> recorded() {
    std::lock_guard lock(mu_);
    return recorded_;
  }

 private:
  void run(uint16_t target) {
    client_fd_ = ::accept(listen_fd_, nullptr, nullptr);
    server_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(target);
    if (client_fd_ < 0 || ::connect(server_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      return;
    back_ = std::thread([this] {
      uint8_t buf[65536];
      for (ssize_t n; (n = ::read(server_fd_, buf, sizeof buf)) > 0;)
        if (!write_all(client_fd_, buf, static_cast<size_t>(n))) break;
      ::shutdown(client_fd_, SHUT_WR);
    });
    for (size_t index = 0;; ++index) {
      std::vector<uint8_t> frame(kHeaderBytes);
      if (!read_all(client_fd_, frame.data(), kHeaderBytes)) break;
      uint32_t length = 0;
      std::memcpy(&length, frame.data() + 8, 4);
      frame.resize(kHeaderBytes + std::min<uint32_t>(length, kMaxFrameBody));
      if (!read_all(client_fd_, frame.data() + kHeaderBytes, frame.size() - kHeaderBytes)) break;
      if (index >= 2) {  // the sealed frames' bodies (headers say only "sealed, N bytes")
        std::lock_guard lock(mu_);
        recorded_.insert(recorded_.end(), frame.begin() + kHeaderBytes, frame.end());
      }
      for (const auto& out : edit_(index, std::move(frame)))
        if (!write_all(server_fd_, out.data(), out.size())) return;
    }
    ::shutdown(server_fd_, SHUT_WR);
  }

  Edit edit_;
  int listen_fd_ = -1, client_fd_ = -1, server_fd_ = -1;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::vector<uint8_t> recorded_;
  std::thread thread_, back_;
};

struct Pair {
  std::unique_ptr<TcpLink> client, server;
};

// A client and a server linked through a proxy that applies `edit`.
Pair linked(std::unique_ptr<Proxy>& proxy, Proxy::Edit edit) {
  auto listener = TcpListener::listen("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok());
  proxy = std::make_unique<Proxy>((*listener)->port(), std::move(edit));
  auto server = std::async(std::launch::async, [&]() -> Result<std::unique_ptr<TcpLink>> {
    auto s = (*listener)->accept();
    if (!s) return s.error();
    return TcpLink::accept(std::move(*s), identity("host-b"));
  });
  auto client = TcpLink::connect("127.0.0.1", proxy->port(), identity("host-a"));
  auto s = server.get();
  EXPECT_TRUE(client.ok() && s.ok());
  if (!client.ok() || !s.ok()) return {};
  return {std::move(*client), std::move(*s)};
}

Frame numbered(uint32_t n) {
  return Frame{MessageType::kCoherence, n, std::vector<uint8_t>(100, static_cast<uint8_t>(n))};
}

// Sends frames 1..3 and returns what the server got: their numbers, then the error, if any.
std::string deliver_three(Pair& p) {
  for (uint32_t n = 1; n <= 3; ++n) EXPECT_TRUE(p.client->send(numbered(n)).ok());
  std::string got;
  for (int i = 0; i < 3; ++i) {
    auto f = p.server->receive();
    if (!f) return got + "error: " + f.error().message();
    got += std::to_string(f->request) + " ";
  }
  return got;
}

TEST(LinkSecurity, AnUntouchedLinkDeliversEveryFrame) {
  std::unique_ptr<Proxy> proxy;
  auto p = linked(proxy, [](size_t, std::vector<uint8_t> f) { return Frames{f}; });
  ASSERT_TRUE(p.client);
  EXPECT_EQ(deliver_three(p), "1 2 3 ");
}

TEST(LinkSecurity, ATamperedFrameEndsTheLink) {
  std::unique_ptr<Proxy> proxy;
  auto p = linked(proxy, [](size_t i, std::vector<uint8_t> f) {
    if (i == 3) f[kHeaderBytes + 40] ^= 0x01;  // frame 2's payload, one bit
    return Frames{f};
  });
  ASSERT_TRUE(p.client);
  const std::string got = deliver_three(p);
  EXPECT_EQ(got.rfind("1 error: frame 1 after the handshake: authentication failed", 0), 0u) << got;
}

TEST(LinkSecurity, AReplayedFrameEndsTheLink) {
  std::unique_ptr<Proxy> proxy;
  auto p = linked(proxy, [](size_t i, std::vector<uint8_t> f) {
    return i == 2 ? Frames{f, f} : Frames{f};  // frame 1, twice
  });
  ASSERT_TRUE(p.client);
  const std::string got = deliver_three(p);
  EXPECT_EQ(got.rfind("1 error: frame 1 after the handshake: authentication failed", 0), 0u) << got;
}

TEST(LinkSecurity, AReorderedFrameEndsTheLink) {
  std::unique_ptr<Proxy> proxy;
  std::vector<uint8_t> held;
  auto p = linked(proxy, [&held](size_t i, std::vector<uint8_t> f) {
    if (i == 2) {  // frame 1 goes after frame 2
      held = f;
      return Frames{};
    }
    return i == 3 ? Frames{f, held} : Frames{f};
  });
  ASSERT_TRUE(p.client);
  const std::string got = deliver_three(p);
  EXPECT_EQ(got.rfind("error: frame 0 after the handshake: authentication failed", 0), 0u) << got;
}

TEST(LinkSecurity, InjectedFramesEndTheLink) {
  Key wrong{};
  wrong.fill(0x42);
  for (bool sealed : {false, true}) {
    std::unique_ptr<Proxy> proxy;
    auto p = linked(proxy, [&](size_t i, std::vector<uint8_t> f) {
      if (i != 3) return Frames{f};
      // Before frame 2: a frame of the attacker's own, plain or sealed with a guessed key.
      const Frame grant{MessageType::kCoherence, 99, std::vector<uint8_t>(64, 0xee)};
      return Frames{sealed ? FrameSealer(wrong).seal(grant) : encode_frame(grant), f};
    });
    ASSERT_TRUE(p.client);
    const std::string got = deliver_three(p);
    EXPECT_EQ(got.rfind(sealed ? "1 error: frame 1 after the handshake: authentication failed"
                               : "1 error: frame 1 after the handshake: unsealed message type 32",
                        0),
              0u)
        << got;
  }
}

TEST(LinkSecurity, PagesOnTheWireLookRandom) {
  std::unique_ptr<Proxy> proxy;
  auto p = linked(proxy, [](size_t, std::vector<uint8_t> f) { return Frames{f}; });
  ASSERT_TRUE(p.client);
  // 64 guest pages of text, the kind of content an eavesdropper would look for.
  const std::string text = "root:x:0:0:root:/root:/bin/bash\n";
  std::vector<uint8_t> page(4096);
  for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<uint8_t>(text[i % text.size()]);
  for (uint32_t n = 0; n < 64; ++n) {
    ASSERT_TRUE(p.client->send(Frame{MessageType::kCoherence, n, page}).ok());
    ASSERT_TRUE(p.server->receive().ok());
  }
  const auto wire = proxy->recorded();
  ASSERT_GT(wire.size(), 64u * 4096);
  EXPECT_EQ(std::search(wire.begin(), wire.end(), text.begin(), text.begin() + 12), wire.end());
  // Byte frequencies: chi-square over 256 values (255 degrees of freedom, mean 255, sd ~23).
  // The plain pages score in the millions; ciphertext stays near 255.
  std::vector<double> count(256, 0);
  for (uint8_t b : wire) count[b] += 1;
  const double expected = static_cast<double>(wire.size()) / 256;
  double chi2 = 0;
  for (double c : count) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi2, 400) << "the captured bytes are not uniform";
}

TEST(LinkLiveness, ASilentPeerIsLostAfterTheTimeout) {
  std::unique_ptr<Proxy> proxy;
  auto p = linked(proxy, [](size_t, std::vector<uint8_t> f) { return Frames{f}; });
  ASSERT_TRUE(p.client);
  p.client->watch_liveness(milliseconds(300));  // the server sends no heartbeats: silence
  auto f = p.client->receive();
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().message(), "no heartbeat for 0.3 s");
  EXPECT_FALSE(p.client->send(numbered(1)).ok());  // the link is over
}

TEST(LinkLiveness, HeartbeatsKeepAnIdleLinkAndABusyReaderIsNotALoss) {
  std::unique_ptr<Proxy> proxy;
  auto p = linked(proxy, [](size_t, std::vector<uint8_t> f) { return Frames{f}; });
  ASSERT_TRUE(p.client);
  p.client->watch_liveness(milliseconds(200));
  p.server->watch_liveness(milliseconds(200));
  // The client reads nothing for 5 timeouts (busy, as a reader running a long operation).
  std::this_thread::sleep_for(milliseconds(1000));
  ASSERT_TRUE(p.server->send(numbered(7)).ok());
  auto f = p.client->receive();  // the heartbeats in between are consumed by the link
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->request, 7u);
  ASSERT_TRUE(p.client->send(numbered(8)).ok());
  auto g = p.server->receive();
  ASSERT_TRUE(g.ok()) << g.error().message();
  EXPECT_EQ(g->request, 8u);
}

}  // namespace
}  // namespace shoal::net

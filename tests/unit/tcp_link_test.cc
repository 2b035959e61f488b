// TcpLink over loopback: the handshake on real sockets, and every way a peer can misbehave.
#include "net/tcp_link.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <thread>

namespace shoal::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

std::vector<uint8_t> secret(const char* s) {
  return std::vector<uint8_t>(s, s + std::strlen(s));
}

LinkIdentity identity(const char* name, const char* key) {
  return LinkIdentity{name, secret(key), std::chrono::milliseconds(3000)};
}

class TcpLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = TcpListener::listen("127.0.0.1", 0);
    ASSERT_TRUE(l.ok()) << l.error().message();
    listener_ = std::move(*l);
  }
  // Accepts one connection on a thread and authenticates it as `me`.
  std::future<Result<std::unique_ptr<TcpLink>>> serve(LinkIdentity me) {
    return std::async(std::launch::async, [this, me]() -> Result<std::unique_ptr<TcpLink>> {
      auto s = listener_->accept();
      if (!s) return s.error();
      return TcpLink::accept(std::move(*s), me);
    });
  }
  // A raw socket to the listener, for peers that do not follow the protocol.
  tcp::socket raw() {
    tcp::socket s(io_);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), listener_->port()));
    return s;
  }

  asio::io_context io_;
  std::unique_ptr<TcpListener> listener_;
};

TEST_F(TcpLinkTest, AuthenticatedPeersExchangeFrames) {
  auto server = serve(identity("host-b", "0123456789abcdef-pod"));
  auto client =
      TcpLink::connect("127.0.0.1", listener_->port(), identity("host-a", "0123456789abcdef-pod"));
  ASSERT_TRUE(client.ok()) << client.error().message();
  auto s = server.get();
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ((*client)->peer_name(), "host-b");
  EXPECT_EQ((*s)->peer_name(), "host-a");
  ASSERT_TRUE(
      (*client)->send(Frame{MessageType::kCoherence, 9, std::vector<uint8_t>(4096, 7)}).ok());
  auto f = (*s)->receive();
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->request, 9u);
  EXPECT_EQ(f->payload.size(), 4096u);
  ASSERT_TRUE((*s)->send(Frame{MessageType::kPong, 9, {}}).ok());
  EXPECT_EQ((*client)->receive()->type, MessageType::kPong);
}

TEST_F(TcpLinkTest, WrongSecretIsRefusedOnBothSides) {
  auto server = serve(identity("host-b", "0123456789abcdef-pod"));
  auto client =
      TcpLink::connect("127.0.0.1", listener_->port(), identity("intruder", "guessed-secret-0000"));
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.error().message().find("failed authentication"), std::string::npos)
      << client.error().message();
  auto s = server.get();
  ASSERT_FALSE(s.ok());  // the client hung up without AUTH: no link, nothing sent
}

TEST_F(TcpLinkTest, UnauthenticatedFramesGetNothingBack) {
  auto server = serve(identity("host-b", "0123456789abcdef-pod"));
  tcp::socket s = raw();
  // Straight to business, no HELLO: asking for a page.
  asio::write(s, asio::buffer(
                     encode_frame(Frame{MessageType::kCoherence, 1, std::vector<uint8_t>(16, 0)})));
  auto r = server.get();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("expected HELLO"), std::string::npos) << r.error().message();
  // The server closed without a single byte.
  uint8_t b;
  boost::system::error_code ec;
  EXPECT_EQ(s.read_some(asio::buffer(&b, 1), ec), 0u);
  EXPECT_EQ(ec, asio::error::eof);
}

TEST_F(TcpLinkTest, GarbledOversizedAndTruncatedFramesBreakTheLink) {
  for (int kind = 0; kind < 4; ++kind) {
    auto server = serve(identity("host-b", "0123456789abcdef-pod"));
    auto client = TcpLink::connect("127.0.0.1", listener_->port(),
                                   identity("host-a", "0123456789abcdef-pod"));
    ASSERT_TRUE(client.ok());
    auto s = server.get();
    ASSERT_TRUE(s.ok());
    // Below the link: write bytes straight to the client's socket via a duplicate fd.
    auto bad = encode_frame(Frame{MessageType::kCoherence, 1, std::vector<uint8_t>(64, 1)});
    std::string expect;
    if (kind == 0) {
      bad[2] ^= 0x55;
      expect = "bad frame magic";
    } else if (kind == 1) {
      const uint32_t huge = kMaxPayload * 4;
      std::memcpy(bad.data() + 8, &huge, 4);
      expect = "exceeds";
    } else if (kind == 2) {
      bad.resize(kHeaderBytes + 10);  // header promises 64 bytes; 10 arrive, then the peer is gone
      expect = "mid-frame";
    } else {
      expect = "unsealed message type 32";  // well-formed, but not encrypted: injected
    }
    ASSERT_TRUE((*client)->send_raw_for_test(bad).ok());
    if (kind == 2) (*client)->close();
    auto f = (*s)->receive();
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.error().message().find(expect), std::string::npos) << f.error().message();
    // The caller names the peer ("lost host h1: ..."), so the link's errors do not.
  }
}

TEST_F(TcpLinkTest, ConnectFailsClearly) {
  const uint16_t port = listener_->port();
  listener_->close();  // nobody listens there any more
  auto c = TcpLink::connect("127.0.0.1", port, identity("a", "0123456789abcdef-pod"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message().find("connect 127.0.0.1:" + std::to_string(port) +
                                     ": Connection refused"),
            std::string::npos)
      << c.error().message();
  EXPECT_FALSE(TcpLink::connect("not-an-ip", 7000, identity("a", "0123456789abcdef-pod")).ok());
}

}  // namespace
}  // namespace shoal::net

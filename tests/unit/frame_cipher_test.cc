// The frame cipher alone: keys both sides agree on, and every way a frame can be tampered with.
#include "net/frame_cipher.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "net/handshake.hpp"

namespace shoal::net {
namespace {

std::vector<uint8_t> bytes_of(const char* s) {
  return std::vector<uint8_t>(s, s + std::strlen(s));
}

// Two handshakes run against each other, as on a real connection.
std::pair<SessionKeys, SessionKeys> handshake_keys(const char* client_secret,
                                                   const char* server_secret) {
  Handshake client(Handshake::Role::kClient, "host-a", bytes_of(client_secret));
  Handshake server(Handshake::Role::kServer, "host-b", bytes_of(server_secret));
  auto to_server = client.start();
  server.start();
  while (!to_server.empty() && !client.failed() && !server.failed()) {
    std::vector<Frame> to_client;
    for (const auto& f : to_server)
      for (auto& r : server.on_frame(f)) to_client.push_back(r);
    to_server.clear();
    for (const auto& f : to_client)
      for (auto& r : client.on_frame(f)) to_server.push_back(r);
  }
  EXPECT_TRUE(client.done());
  EXPECT_TRUE(server.done());
  return {client.session_keys(), server.session_keys()};
}

// The bytes after the 16-byte header, as the frame decoder would hand them over.
Frame as_received(const std::vector<uint8_t>& wire) {
  FrameDecoder d;
  EXPECT_TRUE(d.feed(wire).ok());
  auto f = d.next();
  EXPECT_TRUE(f.has_value());
  return f ? *f : Frame{MessageType::kPing, 0, {}};
}

class FrameCipherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto [c, s] = handshake_keys("0123456789abcdef-pod", "0123456789abcdef-pod");
    client_ = c;
    server_ = s;
  }
  SessionKeys client_, server_;
};

TEST_F(FrameCipherTest, KeysAreMirroredAndDifferPerDirection) {
  EXPECT_EQ(client_.send, server_.receive);
  EXPECT_EQ(client_.receive, server_.send);
  EXPECT_NE(client_.send, client_.receive);
  // A second connection gets fresh keys (fresh nonces).
  auto [c2, s2] = handshake_keys("0123456789abcdef-pod", "0123456789abcdef-pod");
  EXPECT_NE(c2.send, client_.send);
}

TEST_F(FrameCipherTest, FramesRoundTripInOrder) {
  FrameSealer seal(client_.send);
  FrameOpener open(server_.receive);
  for (uint32_t i = 0; i < 5; ++i) {
    Frame f{MessageType::kCoherence, 100 + i,
            std::vector<uint8_t>(4096 * i, static_cast<uint8_t>(i))};
    auto out = open.open(as_received(seal.seal(f)));
    ASSERT_TRUE(out.ok()) << out.error().message();
    EXPECT_EQ(out->type, MessageType::kCoherence);
    EXPECT_EQ(out->request, 100 + i);
    EXPECT_EQ(out->payload, f.payload);
  }
  EXPECT_EQ(open.opened(), 5u);
}

TEST_F(FrameCipherTest, NoPlaintextOnTheWire) {
  FrameSealer seal(client_.send);
  std::vector<uint8_t> page(4096);
  const char* text = "GUEST SECRET PAGE CONTENT ";
  for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<uint8_t>(text[i % 26]);
  const auto wire = seal.seal(Frame{MessageType::kCoherence, 7, page});
  ASSERT_EQ(wire.size(), kHeaderBytes + kSealOverhead + page.size());
  const std::vector<uint8_t> needle(text, text + 8);
  EXPECT_EQ(std::search(wire.begin(), wire.end(), needle.begin(), needle.end()), wire.end());
  // The same page sealed twice looks different (the nonce advances).
  const auto again = seal.seal(Frame{MessageType::kCoherence, 7, page});
  EXPECT_NE(std::vector<uint8_t>(wire.begin() + kHeaderBytes, wire.end()),
            std::vector<uint8_t>(again.begin() + kHeaderBytes, again.end()));
}

TEST_F(FrameCipherTest, EveryModifiedByteIsCaught) {
  const Frame f{MessageType::kCoherence, 3, std::vector<uint8_t>(64, 0x5a)};
  const auto clean = FrameSealer(client_.send).seal(f);
  for (size_t at = kHeaderBytes; at < clean.size(); ++at) {
    auto bad = clean;
    bad[at] ^= 0x01;
    FrameOpener open(server_.receive);
    auto out = open.open(as_received(bad));
    ASSERT_FALSE(out.ok()) << "a flipped bit at byte " << at << " went through";
    EXPECT_NE(out.error().message().find("authentication failed"), std::string::npos);
  }
}

TEST_F(FrameCipherTest, ReplayedReorderedAndInjectedFramesEndTheStream) {
  FrameSealer seal(client_.send);
  const auto a = seal.seal(Frame{MessageType::kCoherence, 1, {1}});
  const auto b = seal.seal(Frame{MessageType::kCoherence, 2, {2}});
  {  // replay: a, a
    FrameOpener open(server_.receive);
    ASSERT_TRUE(open.open(as_received(a)).ok());
    EXPECT_FALSE(open.open(as_received(a)).ok());
    // and once failed, stays failed even for the right next frame
    EXPECT_FALSE(open.open(as_received(b)).ok());
  }
  {  // reorder: b before a
    FrameOpener open(server_.receive);
    EXPECT_FALSE(open.open(as_received(b)).ok());
  }
  {  // injected: an unsealed frame, and one sealed with another secret's key
    FrameOpener open(server_.receive);
    auto out = open.open(Frame{MessageType::kCoherence, 0, {1, 2, 3}});
    ASSERT_FALSE(out.ok());
    EXPECT_NE(out.error().message().find("unsealed"), std::string::npos) << out.error().message();
    auto [other, unused] = handshake_keys("another-pod-secret-000", "another-pod-secret-000");
    FrameOpener open2(server_.receive);
    EXPECT_FALSE(
        open2
            .open(as_received(FrameSealer(other.send).seal(Frame{MessageType::kCoherence, 1, {1}})))
            .ok());
  }
  {  // the server's own direction does not open client frames (reflection)
    FrameOpener open(client_.receive);
    EXPECT_FALSE(open.open(as_received(a)).ok());
  }
}

TEST_F(FrameCipherTest, MalformedSealedFramesAreRefused) {
  FrameOpener open(server_.receive);
  auto out = open.open(Frame{MessageType::kSealed, 0, std::vector<uint8_t>(kSealOverhead - 1)});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().message().find("malformed"), std::string::npos) << out.error().message();
}

}  // namespace
}  // namespace shoal::net

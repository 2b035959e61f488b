#include "net/handshake.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

namespace shoal::net {
namespace {

std::vector<uint8_t> secret(const char* s) {
  return std::vector<uint8_t>(s, s + std::strlen(s));
}

// Runs the two sides against each other through a wire that may tamper with frames; returns
// the frames each side sent.
struct Exchange {
  std::vector<Frame> from_client, from_server;
};
Exchange converse(
    Handshake& client, Handshake& server,
    const std::function<void(Frame&)>& tamper = [](Frame&) {}) {
  Exchange run;
  std::vector<Frame> to_server = client.start(), to_client = server.start();
  for (int round = 0; round < 8 && (!to_server.empty() || !to_client.empty()); ++round) {
    std::vector<Frame> next_to_server, next_to_client;
    for (Frame f : to_server) {
      run.from_client.push_back(f);
      tamper(f);
      for (auto& r : server.on_frame(f)) next_to_client.push_back(r);
    }
    for (Frame f : to_client) {
      run.from_server.push_back(f);
      tamper(f);
      for (auto& r : client.on_frame(f)) next_to_server.push_back(r);
    }
    to_server = std::move(next_to_server);
    to_client = std::move(next_to_client);
  }
  return run;
}

TEST(Handshake, SameSecretAuthenticatesBothWays) {
  Handshake c(Handshake::Role::kClient, "host-a", secret("0123456789abcdef-pod"));
  Handshake s(Handshake::Role::kServer, "host-b", secret("0123456789abcdef-pod"));
  converse(c, s);
  EXPECT_TRUE(c.done()) << c.failure();
  EXPECT_TRUE(s.done()) << s.failure();
  EXPECT_EQ(c.peer_name(), "host-b");
  EXPECT_EQ(s.peer_name(), "host-a");
}

TEST(Handshake, ClientWithTheWrongSecretGetsNothingAfterHelloAck) {
  Handshake c(Handshake::Role::kClient, "intruder", secret("not-the-pod-secret!!"));
  Handshake s(Handshake::Role::kServer, "host-b", secret("0123456789abcdef-pod"));
  Exchange run = converse(c, s);
  // The client cannot verify the server's proof, so it stops before sending AUTH...
  EXPECT_TRUE(c.failed());
  EXPECT_NE(c.failure().find("failed authentication"), std::string::npos) << c.failure();
  EXPECT_FALSE(s.done());
  // ...and the server sent only its HELLO_ACK, which carries no pod data.
  ASSERT_EQ(run.from_server.size(), 1u);
  EXPECT_EQ(run.from_server[0].type, MessageType::kHelloAck);
}

TEST(Handshake, ServerRefusesAForgedAuth) {
  Handshake c(Handshake::Role::kClient, "host-a", secret("0123456789abcdef-pod"));
  Handshake s(Handshake::Role::kServer, "host-b", secret("0123456789abcdef-pod"));
  Exchange run = converse(c, s, [](Frame& f) {
    if (f.type == MessageType::kAuth) f.payload[5] ^= 1;
  });
  EXPECT_TRUE(s.failed());
  EXPECT_NE(s.failure().find("'host-a' failed authentication"), std::string::npos);
  for (const auto& f : run.from_server) EXPECT_NE(f.type, MessageType::kAuthOk);
  EXPECT_FALSE(c.done());
}

TEST(Handshake, ProofsDoNotReplayAcrossNonces) {
  // Record a good exchange, then replay the client's AUTH to a server with a new nonce.
  Handshake c1(Handshake::Role::kClient, "host-a", secret("0123456789abcdef-pod"));
  Handshake s1(Handshake::Role::kServer, "host-b", secret("0123456789abcdef-pod"));
  Exchange recorded = converse(c1, s1);
  ASSERT_TRUE(s1.done());
  Handshake s2(Handshake::Role::kServer, "host-b", secret("0123456789abcdef-pod"));
  s2.start();
  s2.on_frame(recorded.from_client[0]);  // HELLO
  s2.on_frame(recorded.from_client[1]);  // the old AUTH
  EXPECT_TRUE(s2.failed());
}

TEST(Handshake, VersionMismatchAndUnexpectedFrames) {
  Handshake s(Handshake::Role::kServer, "host-b", secret("0123456789abcdef-pod"));
  s.start();
  Frame hello{MessageType::kHello, 0, std::vector<uint8_t>(2 + kNonceBytes, 0)};
  hello.payload[0] = 9;
  EXPECT_TRUE(s.on_frame(hello).empty());
  EXPECT_NE(s.failure().find("wire version 9"), std::string::npos);

  Handshake s2(Handshake::Role::kServer, "host-b", secret("0123456789abcdef-pod"));
  s2.start();
  EXPECT_TRUE(
      s2.on_frame(Frame{MessageType::kCoherence, 0, std::vector<uint8_t>(4096, 1)}).empty());
  EXPECT_TRUE(s2.failed());
  // Once failed, nothing more is ever sent.
  EXPECT_TRUE(s2.on_frame(Frame{MessageType::kHello, 0, std::vector<uint8_t>(40, 0)}).empty());
}

TEST(Handshake, SecretFileRules) {
  const std::string dir = ::testing::TempDir();
  std::ofstream(dir + "/short.secret") << "tooshort\n";
  std::ofstream(dir + "/good.secret") << "0123456789abcdef-pod\n";
  auto bad = read_secret_file(dir + "/short.secret");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("at least 16"), std::string::npos);
  auto good = read_secret_file(dir + "/good.secret");
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good->size(), 20u);  // newline dropped
  EXPECT_FALSE(read_secret_file(dir + "/missing.secret").ok());
}

}  // namespace
}  // namespace shoal::net

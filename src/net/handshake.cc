#include "net/handshake.hpp"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>
#include <fstream>
#include <optional>

namespace shoal::net {

namespace {

std::array<uint8_t, kNonceBytes> random_nonce() {
  std::array<uint8_t, kNonceBytes> n{};
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) {
    // Without randomness there is no safe handshake; an all-zero nonce fails loudly below.
    n.fill(0);
  }
  return n;
}

void append(std::vector<uint8_t>& b, const void* p, size_t n) {
  const auto* c = static_cast<const uint8_t*>(p);
  b.insert(b.end(), c, c + n);
}

// HELLO and HELLO_ACK start with the sender's wire version.
std::optional<std::string> version_mismatch(const std::vector<uint8_t>& payload) {
  uint16_t version;
  std::memcpy(&version, payload.data(), 2);
  if (version == kWireVersion) return std::nullopt;
  return "peer speaks wire version " + std::to_string(version) + ", this node " +
         std::to_string(kWireVersion);
}

}  // namespace

Result<std::vector<uint8_t>> read_secret_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error("secret file " + path + ": cannot read it");
  std::vector<uint8_t> s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.size() < kMinSecretBytes)
    return Error("secret file " + path + ": " + std::to_string(s.size()) + " bytes; at least " +
                 std::to_string(kMinSecretBytes) + " are needed");
  return s;
}

Handshake::Handshake(Role role, std::string node_name, std::vector<uint8_t> secret,
                     NonceSource nonces)
    : role_(role),
      name_(std::move(node_name)),
      secret_(std::move(secret)),
      nonces_(nonces ? std::move(nonces) : NonceSource(random_nonce)) {
  if (name_.size() > kMaxNodeName) name_.resize(kMaxNodeName);
}

std::array<uint8_t, 32> Handshake::proof(const char* label, std::span<const uint8_t> first,
                                         std::span<const uint8_t> second,
                                         const std::string& name) const {
  std::vector<uint8_t> msg;
  append(msg, "shoal-auth-v1 ", 14);
  append(msg, label, std::strlen(label));
  append(msg, first.data(), first.size());
  append(msg, second.data(), second.size());
  append(msg, name.data(), name.size());
  std::array<uint8_t, 32> out{};
  unsigned len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()), msg.data(), msg.size(),
       out.data(), &len);
  return out;
}

SessionKeys Handshake::session_keys() const {
  const bool client = role_ == Role::kClient;
  return derive_session_keys(secret_, client ? my_nonce_ : peer_nonce_,
                             client ? peer_nonce_ : my_nonce_, client ? name_ : peer_name_,
                             client ? peer_name_ : name_, client);
}

std::vector<Frame> Handshake::fail(std::string why) {
  state_ = State::kFailed;
  failure_ = std::move(why);
  return {};
}

std::vector<Frame> Handshake::start() {
  my_nonce_ = nonces_();
  if (role_ == Role::kServer) {
    state_ = State::kWaitHello;
    return {};
  }
  Frame hello{MessageType::kHello, 0, {}};
  const uint16_t version = kWireVersion;
  append(hello.payload, &version, 2);
  append(hello.payload, my_nonce_.data(), my_nonce_.size());
  append(hello.payload, name_.data(), name_.size());
  state_ = State::kWaitHelloAck;
  return {hello};
}

std::vector<Frame> Handshake::on_frame(const Frame& f) {
  const auto& p = f.payload;
  switch (state_) {
    case State::kWaitHello: {
      if (f.type != MessageType::kHello)
        return fail("expected HELLO, got message type " + std::to_string(static_cast<int>(f.type)));
      if (p.size() < 2 + kNonceBytes || p.size() > 2 + kNonceBytes + kMaxNodeName)
        return fail("malformed HELLO");
      if (auto bad = version_mismatch(p)) return fail(*bad);
      std::memcpy(peer_nonce_.data(), p.data() + 2, kNonceBytes);
      peer_name_.assign(p.begin() + 2 + kNonceBytes, p.end());
      const uint16_t version = kWireVersion;
      Frame ack{MessageType::kHelloAck, 0, {}};
      append(ack.payload, &version, 2);
      append(ack.payload, my_nonce_.data(), kNonceBytes);
      const auto pr = proof("server", peer_nonce_, my_nonce_, name_);
      append(ack.payload, pr.data(), pr.size());
      append(ack.payload, name_.data(), name_.size());
      state_ = State::kWaitAuth;
      return {ack};
    }
    case State::kWaitHelloAck: {
      if (f.type != MessageType::kHelloAck) return fail("expected HELLO_ACK");
      if (p.size() < 2 + kNonceBytes + 32 || p.size() > 2 + kNonceBytes + 32 + kMaxNodeName)
        return fail("malformed HELLO_ACK");
      if (auto bad = version_mismatch(p)) return fail(*bad);
      std::memcpy(peer_nonce_.data(), p.data() + 2, kNonceBytes);
      peer_name_.assign(p.begin() + 2 + kNonceBytes + 32, p.end());
      const auto expected = proof("server", my_nonce_, peer_nonce_, peer_name_);
      if (CRYPTO_memcmp(expected.data(), p.data() + 2 + kNonceBytes, 32) != 0)
        return fail("peer '" + peer_name_ + "' failed authentication (wrong pod secret?)");
      Frame auth{MessageType::kAuth, 0, {}};
      const auto pr = proof("client", peer_nonce_, my_nonce_, name_);
      append(auth.payload, pr.data(), pr.size());
      state_ = State::kWaitAuthOk;
      return {auth};
    }
    case State::kWaitAuth: {
      if (f.type != MessageType::kAuth || p.size() != 32) return fail("expected AUTH");
      const auto expected = proof("client", my_nonce_, peer_nonce_, peer_name_);
      if (CRYPTO_memcmp(expected.data(), p.data(), 32) != 0)
        return fail("peer '" + peer_name_ + "' failed authentication (wrong pod secret?)");
      state_ = State::kDone;
      return {Frame{MessageType::kAuthOk, 0, {}}};
    }
    case State::kWaitAuthOk:
      if (f.type != MessageType::kAuthOk || !p.empty()) return fail("expected AUTH_OK");
      state_ = State::kDone;
      return {};
    default:
      return fail("unexpected message during the handshake");
  }
}

}  // namespace shoal::net

// Mutual challenge-response that every mesh connection does before anything else, keyed
// with the pod's shared secret (HMAC-SHA256, OpenSSL):
//
//   client                                    server
//   HELLO     {version, nonce_c, name_c}  ──▶
//                                         ◀──  HELLO_ACK {version, nonce_s, name_s,
//                                                   proof_s = HMAC(secret,
//                                                   "server"|nonce_c|nonce_s|name_s)}
//   checks proof_s; on failure sends nothing more and closes
//   AUTH      {proof_c = HMAC(secret, "client"|nonce_s|nonce_c|name_c)} ──▶
//                                               checks proof_c; on failure sends nothing more
//                                         ◀──  AUTH_OK
//
// Each side proves it knows the secret over the other's fresh nonce, so neither proof can be
// replayed; proofs are compared in constant time. The transport passes no other frame in
// either direction until the handshake is done: a peer that fails it never gets a byte of
// guest memory, and every frame after it is sealed with keys derived from the secret and
// both nonces (net/frame_cipher.hpp). Pure logic over frames, so tests drive it without sockets.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "net/frame.hpp"
#include "net/frame_cipher.hpp"

namespace shoal::net {

inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMinSecretBytes = 16;
inline constexpr size_t kMaxNodeName = 64;

// Reads a secret file: at least kMinSecretBytes, a trailing newline ignored.
Result<std::vector<uint8_t>> read_secret_file(const std::string& path);

class Handshake {
 public:
  enum class Role { kClient, kServer };
  enum class State { kStart, kWaitHelloAck, kWaitHello, kWaitAuth, kWaitAuthOk, kDone, kFailed };
  using NonceSource = std::function<std::array<uint8_t, kNonceBytes>()>;

  Handshake(Role role, std::string node_name, std::vector<uint8_t> secret, NonceSource nonces = {});

  // What to send first (the client's HELLO; nothing for the server).
  std::vector<Frame> start();
  // A frame from the peer; returns what to send back. After a failure it returns nothing.
  std::vector<Frame> on_frame(const Frame& frame);

  State state() const { return state_; }
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kFailed; }
  const std::string& failure() const { return failure_; }
  const std::string& peer_name() const { return peer_name_; }
  // After done(): this connection's keys (net/frame_cipher.hpp), from the secret and both nonces.
  SessionKeys session_keys() const;

 private:
  std::vector<Frame> fail(std::string why);
  std::array<uint8_t, 32> proof(const char* label, std::span<const uint8_t> first,
                                std::span<const uint8_t> second, const std::string& name) const;

  Role role_;
  std::string name_;
  std::vector<uint8_t> secret_;
  NonceSource nonces_;
  State state_ = State::kStart;
  std::array<uint8_t, kNonceBytes> my_nonce_{}, peer_nonce_{};
  std::string peer_name_;
  std::string failure_;
};

}  // namespace shoal::net

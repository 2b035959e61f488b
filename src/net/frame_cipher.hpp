// Encryption and authentication of every frame after the handshake (AES-256-GCM, OpenSSL).
//
// Keys: HKDF-SHA256 over the pod secret, salted with both handshake nonces, one key per
// direction ("client to server", "server to client", bound to both node names). A fresh pair
// per connection, so nothing recorded on an earlier connection can be replayed on this one.
//
// A sealed frame is an ordinary frame of type kSealed whose payload is
//
//   AES-256-GCM( u16 inner type | u32 inner request | inner payload ) | 16-byte tag
//
// with the sealed frame's 16-byte header as associated data and, as the 96-bit nonce, the
// count of frames this direction has sealed before (never sent: each side counts). A frame
// that was modified, replayed, reordered, dropped before a later one, or made up without the
// key fails the tag check; the link then ends (FrameOpener stays failed).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "net/frame.hpp"

namespace shoal::net {

inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kSealedHeadBytes = 6;  // inner type and request
inline constexpr size_t kSealOverhead = kSealedHeadBytes + kTagBytes;

using Key = std::array<uint8_t, kKeyBytes>;

struct SessionKeys {
  Key send{};
  Key receive{};
};

// Both sides derive the same pair, mirrored. `is_client`: this side sent HELLO.
SessionKeys derive_session_keys(std::span<const uint8_t> secret,
                                std::span<const uint8_t> client_nonce,
                                std::span<const uint8_t> server_nonce,
                                const std::string& client_name, const std::string& server_name,
                                bool is_client);

// One OpenSSL AES-256-GCM context, keyed for one direction (defined in frame_cipher.cc).
struct GcmContext;
struct GcmContextFree {
  void operator()(GcmContext* c) const;
};
using GcmContextPtr = std::unique_ptr<GcmContext, GcmContextFree>;

class FrameSealer {
 public:
  explicit FrameSealer(const Key& key);
  // The sealed frame's bytes, ready for the wire. Callers serialize: the counter is the nonce.
  std::vector<uint8_t> seal(const Frame& frame);

 private:
  GcmContextPtr gcm_;
  uint64_t counter_ = 0;
};

class FrameOpener {
 public:
  explicit FrameOpener(const Key& key);
  // The inner frame of the next sealed frame from the stream. Any failure is final.
  Result<Frame> open(const Frame& sealed);
  uint64_t opened() const { return counter_; }

 private:
  GcmContextPtr gcm_;
  uint64_t counter_ = 0;
  bool failed_ = false;
};

}  // namespace shoal::net

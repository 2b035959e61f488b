#include "net/frame_cipher.hpp"

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstring>

namespace shoal::net {

namespace {

Key hkdf(std::span<const uint8_t> secret, std::span<const uint8_t> salt, const std::string& info) {
  Key out{};
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  size_t len = out.size();
  const bool ok =
      ctx != nullptr && EVP_PKEY_derive_init(ctx) == 1 &&
      EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) == 1 &&
      EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt.data(), static_cast<int>(salt.size())) == 1 &&
      EVP_PKEY_CTX_set1_hkdf_key(ctx, secret.data(), static_cast<int>(secret.size())) == 1 &&
      EVP_PKEY_CTX_add1_hkdf_info(ctx, reinterpret_cast<const uint8_t*>(info.data()),
                                  static_cast<int>(info.size())) == 1 &&
      EVP_PKEY_derive(ctx, out.data(), &len) == 1 && len == out.size();
  EVP_PKEY_CTX_free(ctx);
  // A failed derivation gives an all-zero key on this side only: the first sealed frame
  // either way then fails its tag check and the link ends. Never a silent success.
  if (!ok) out.fill(0);
  return out;
}

// 96-bit GCM nonce: 4 zero bytes, then the little-endian frame count of this direction. One
// key per direction and per connection, so a (key, nonce) pair is never used twice.
std::array<uint8_t, 12> nonce_of(uint64_t counter) {
  std::array<uint8_t, 12> iv{};
  std::memcpy(iv.data() + 4, &counter, 8);
  return iv;
}

}  // namespace

// The EVP context itself; a null one (allocation or key setup failed) makes every seal carry
// a tag that cannot verify and every open fail.
struct GcmContext {
  EVP_CIPHER_CTX* ctx;
};

void GcmContextFree::operator()(GcmContext* c) const {
  EVP_CIPHER_CTX_free(c->ctx);
  delete c;
}

namespace {

GcmContextPtr new_gcm(const Key& key, bool encrypt) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const int ok = ctx == nullptr ? 0
                 : encrypt
                     ? EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr)
                     : EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr);
  if (ok != 1) {
    EVP_CIPHER_CTX_free(ctx);
    ctx = nullptr;
  }
  return GcmContextPtr(new GcmContext{ctx});
}

}  // namespace

SessionKeys derive_session_keys(std::span<const uint8_t> secret,
                                std::span<const uint8_t> client_nonce,
                                std::span<const uint8_t> server_nonce,
                                const std::string& client_name, const std::string& server_name,
                                bool is_client) {
  std::vector<uint8_t> salt(client_nonce.begin(), client_nonce.end());
  salt.insert(salt.end(), server_nonce.begin(), server_nonce.end());
  const std::string names = client_name + '\0' + server_name;
  const Key c2s = hkdf(secret, salt, "shoal-wire-v1 client to server " + names);
  const Key s2c = hkdf(secret, salt, "shoal-wire-v1 server to client " + names);
  return is_client ? SessionKeys{c2s, s2c} : SessionKeys{s2c, c2s};
}

FrameSealer::FrameSealer(const Key& key) : gcm_(new_gcm(key, true)) {}

std::vector<uint8_t> FrameSealer::seal(const Frame& frame) {
  const size_t inner = kSealedHeadBytes + frame.payload.size();
  const auto length = static_cast<uint32_t>(inner + kTagBytes);
  std::vector<uint8_t> out(kHeaderBytes + length);
  encode_header(MessageType::kSealed, length, 0, out.data());
  uint8_t head[kSealedHeadBytes];
  const auto type = static_cast<uint16_t>(frame.type);
  std::memcpy(head, &type, 2);
  std::memcpy(head + 2, &frame.request, 4);
  const auto iv = nonce_of(counter_++);
  uint8_t* body = out.data() + kHeaderBytes;
  int n = 0;
  EVP_CIPHER_CTX* c = gcm_->ctx;
  // Any failure here leaves a frame whose tag cannot verify: the peer ends the link.
  bool ok = c != nullptr && EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, iv.data()) == 1 &&
            EVP_EncryptUpdate(c, nullptr, &n, out.data(), kHeaderBytes) == 1 &&
            EVP_EncryptUpdate(c, body, &n, head, kSealedHeadBytes) == 1;
  if (ok && !frame.payload.empty())
    ok = EVP_EncryptUpdate(c, body + kSealedHeadBytes, &n, frame.payload.data(),
                           static_cast<int>(frame.payload.size())) == 1;
  ok = ok && EVP_EncryptFinal_ex(c, body + inner, &n) == 1 &&
       EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, kTagBytes, body + inner) == 1;
  if (!ok) std::memset(body + inner, 0, kTagBytes);
  return out;
}

FrameOpener::FrameOpener(const Key& key) : gcm_(new_gcm(key, false)) {}

Result<Frame> FrameOpener::open(const Frame& sealed) {
  const uint64_t index = counter_;
  auto fail = [&](const std::string& why) -> Result<Frame> {
    failed_ = true;
    return Error("frame " + std::to_string(index) + " after the handshake: " + why);
  };
  if (failed_) return Error("the link failed an earlier frame");
  if (sealed.type != MessageType::kSealed)
    return fail("unsealed message type " + std::to_string(static_cast<int>(sealed.type)) +
                " (injected, or a peer without encryption)");
  const auto& p = sealed.payload;
  if (p.size() < kSealOverhead || p.size() - kSealOverhead > kMaxPayload || sealed.request != 0)
    return fail("malformed sealed frame of " + std::to_string(p.size()) + " bytes");
  uint8_t header[kHeaderBytes];
  encode_header(MessageType::kSealed, static_cast<uint32_t>(p.size()), sealed.request, header);
  const size_t inner = p.size() - kTagBytes;
  std::vector<uint8_t> plain(inner);
  const auto iv = nonce_of(counter_++);
  int n = 0;
  EVP_CIPHER_CTX* c = gcm_->ctx;
  std::array<uint8_t, kTagBytes> tag{};
  std::memcpy(tag.data(), p.data() + inner, kTagBytes);
  const bool ok = c != nullptr &&
                  EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, iv.data()) == 1 &&
                  EVP_DecryptUpdate(c, nullptr, &n, header, kHeaderBytes) == 1 &&
                  EVP_DecryptUpdate(c, plain.data(), &n, p.data(), static_cast<int>(inner)) == 1 &&
                  EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) == 1 &&
                  EVP_DecryptFinal_ex(c, plain.data() + n, &n) == 1;
  if (!ok) return fail("authentication failed (modified, replayed, reordered or injected)");
  Frame f;
  uint16_t type = 0;
  std::memcpy(&type, plain.data(), 2);
  std::memcpy(&f.request, plain.data() + 2, 4);
  f.type = static_cast<MessageType>(type);
  if (f.type == MessageType::kSealed) return fail("a sealed frame inside a sealed frame");
  f.payload.assign(plain.begin() + kSealedHeadBytes, plain.end());
  return f;
}

}  // namespace shoal::net

#include "net/frame.hpp"

#include <cstring>
#include <sstream>

namespace shoal::net {

namespace {

template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

void encode_header(MessageType type, uint32_t length, uint32_t request, uint8_t* out) {
  const uint32_t magic = kFrameMagic;
  const uint16_t version = kWireVersion;
  const auto t = static_cast<uint16_t>(type);
  std::memcpy(out, &magic, 4);
  std::memcpy(out + 4, &version, 2);
  std::memcpy(out + 6, &t, 2);
  std::memcpy(out + 8, &length, 4);
  std::memcpy(out + 12, &request, 4);
}

std::vector<uint8_t> encode_frame(const Frame& frame) {
  std::vector<uint8_t> b(kHeaderBytes + frame.payload.size());
  encode_header(frame.type, static_cast<uint32_t>(frame.payload.size()), frame.request, b.data());
  if (!frame.payload.empty())
    std::memcpy(b.data() + kHeaderBytes, frame.payload.data(), frame.payload.size());
  return b;
}

namespace {

uint32_t limit_of(uint16_t type) {
  return type == static_cast<uint16_t>(MessageType::kSealed) ? kMaxFrameBody : kMaxPayload;
}

// Why a complete header is unacceptable, or nothing.
std::optional<Error> check_header(const uint8_t* h) {
  std::ostringstream why;
  if (get<uint32_t>(h) != kFrameMagic)
    why << "bad frame magic 0x" << std::hex << get<uint32_t>(h) << " (not a shoal peer)";
  else if (get<uint16_t>(h + 4) != kWireVersion)
    why << "wire version " << get<uint16_t>(h + 4) << " is not supported (this node speaks "
        << kWireVersion << ")";
  else if (get<uint32_t>(h + 8) > limit_of(get<uint16_t>(h + 6)))
    why << "frame of " << get<uint32_t>(h + 8) << " bytes exceeds the "
        << limit_of(get<uint16_t>(h + 6)) << "-byte limit";
  else
    return std::nullopt;
  return Error(why.str());
}

}  // namespace

Status FrameDecoder::feed(std::span<const uint8_t> bytes) {
  if (failed_) return *failed_;
  // Drop what was consumed before growing, so the buffer holds at most one frame and a bit.
  if (consumed_ > 0) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  // Check the header as soon as it is complete: an oversized length is refused before its
  // payload is buffered.
  if (buffer_.size() >= kHeaderBytes) failed_ = check_header(buffer_.data());
  if (failed_) return *failed_;
  return {};
}

std::optional<Frame> FrameDecoder::next() {
  if (failed_ || buffered() < kHeaderBytes) return std::nullopt;
  const uint8_t* h = buffer_.data() + consumed_;
  if ((failed_ = check_header(h))) return std::nullopt;
  const uint32_t length = get<uint32_t>(h + 8);
  if (buffered() < kHeaderBytes + length) return std::nullopt;
  Frame f;
  f.type = static_cast<MessageType>(get<uint16_t>(h + 6));
  f.request = get<uint32_t>(h + 12);
  f.payload.assign(h + kHeaderBytes, h + kHeaderBytes + length);
  consumed_ += kHeaderBytes + length;
  return f;
}

const std::optional<Error>& FrameDecoder::error() const {
  return failed_;
}

}  // namespace shoal::net

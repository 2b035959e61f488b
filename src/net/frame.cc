#include "net/frame.hpp"

#include <cstring>
#include <sstream>

namespace shoal::net {

namespace {

template <class T>
void put(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}
template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

std::vector<uint8_t> encode_frame(const Frame& frame) {
  std::vector<uint8_t> b(kHeaderBytes + frame.payload.size());
  put<uint32_t>(b, 0, kFrameMagic);
  put<uint16_t>(b, 4, kWireVersion);
  put<uint16_t>(b, 6, static_cast<uint16_t>(frame.type));
  put<uint32_t>(b, 8, static_cast<uint32_t>(frame.payload.size()));
  put<uint32_t>(b, 12, frame.request);
  if (!frame.payload.empty())
    std::memcpy(b.data() + kHeaderBytes, frame.payload.data(), frame.payload.size());
  return b;
}

namespace {

// Why a complete header is unacceptable, or nothing.
std::optional<Error> check_header(const uint8_t* h) {
  std::ostringstream why;
  if (get<uint32_t>(h) != kFrameMagic)
    why << "bad frame magic 0x" << std::hex << get<uint32_t>(h) << " (not a shoal peer)";
  else if (get<uint16_t>(h + 4) != kWireVersion)
    why << "wire version " << get<uint16_t>(h + 4) << " is not supported (this node speaks "
        << kWireVersion << ")";
  else if (get<uint32_t>(h + 8) > kMaxPayload)
    why << "frame of " << get<uint32_t>(h + 8) << " bytes exceeds the " << kMaxPayload
        << "-byte limit";
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

// Little-endian fields in wire and file formats: a writer that appends and a reader that never
// reads past the end (every get reports whether the bytes were there).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace shoal {

class WireWriter {
 public:
  template <class T>
  WireWriter& put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // x86-64 only: little-endian already
    bytes_.insert(bytes_.end(), b, b + sizeof(T));
    return *this;
  }
  WireWriter& put_bytes(const void* p, size_t n) {
    if (n == 0) return *this;
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
    return *this;
  }
  WireWriter& put_string(const std::string& s) { return put_bytes(s.data(), s.size()); }
  // A u32 length, then that many bytes (read back with WireReader::get_blob).
  WireWriter& put_blob(const std::vector<uint8_t>& b) {
    return put(static_cast<uint32_t>(b.size())).put_bytes(b.data(), b.size());
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class WireReader {
 public:
  explicit WireReader(const std::vector<uint8_t>& b) : b_(b) {}
  template <class T>
  bool get(T& v) {
    if (b_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool get_bytes(void* p, size_t n) {
    if (n == 0) return true;  // p may be an empty vector's null data(): no memcpy from or to it
    if (b_.size() - pos_ < n) return false;
    std::memcpy(p, b_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  // A length-prefixed blob of at most `max` bytes; the error says what was wrong with it
  // ("truncated", "70000 bytes, at most 65536"), for the caller to name the field.
  bool get_blob(std::vector<uint8_t>& out, size_t max, std::string& error) {
    uint32_t n = 0;
    if (!get(n)) return error = "truncated", false;
    if (n > max) return error = std::to_string(n) + " bytes, at most " + std::to_string(max), false;
    out.resize(n);
    if (!get_bytes(out.data(), n)) return error = "truncated", false;
    return true;
  }
  size_t left() const { return b_.size() - pos_; }
  std::string rest() {
    std::string s(b_.begin() + static_cast<long>(pos_), b_.end());
    pos_ = b_.size();
    return s;
  }

 private:
  const std::vector<uint8_t>& b_;
  size_t pos_ = 0;
};

}  // namespace shoal

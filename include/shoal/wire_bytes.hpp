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

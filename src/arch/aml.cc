#include "arch/aml.hpp"

namespace shoal::aml {

namespace {

constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kBytePrefix = 0x0a, kWordPrefix = 0x0b,
                  kDWordPrefix = 0x0c, kQWordPrefix = 0x0e;
constexpr uint8_t kNameOp = 0x08, kScopeOp = 0x10, kBufferOp = 0x11, kPackageOp = 0x12;
constexpr uint8_t kExtOpPrefix = 0x5b, kDeviceOp = 0x82;
constexpr uint8_t kRootChar = '\\';

void append(Bytes& to, const Bytes& what) {
  to.insert(to.end(), what.begin(), what.end());
}

void append_le(Bytes& to, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) to.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// op (PkgLength body).
Bytes with_length(const Bytes& op, const Bytes& body) {
  Bytes out = op;
  append(out, pkg_length(body.size()));
  append(out, body);
  return out;
}

}  // namespace

Bytes pkg_length(size_t body_size) {
  // One byte holds up to 63 (the count includes the length bytes themselves); longer
  // lengths take 2-4 bytes: the first says how many follow and holds the low nibble.
  if (body_size + 1 <= 63) return {static_cast<uint8_t>(body_size + 1)};
  for (int n = 2; n <= 4; ++n) {
    const size_t total = body_size + static_cast<size_t>(n);
    if (total < (size_t{1} << (4 + 8 * (n - 1)))) {
      Bytes out{static_cast<uint8_t>(((n - 1) << 6) | (total & 0x0f))};
      append_le(out, total >> 4, n - 1);
      return out;
    }
  }
  return {};  // beyond 256 MiB: not representable, never built here
}

Bytes concat(const std::vector<Bytes>& terms) {
  Bytes out;
  for (const Bytes& t : terms) append(out, t);
  return out;
}

Bytes name_string(const std::string& path) {
  Bytes out;
  size_t i = 0;
  if (!path.empty() && path[0] == kRootChar) {
    out.push_back(kRootChar);
    i = 1;
  }
  std::string seg = path.substr(i);
  seg.resize(4, '_');
  out.insert(out.end(), seg.begin(), seg.end());
  return out;
}

Bytes integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  Bytes out;
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le(out, value, 1);
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le(out, value, 2);
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    append_le(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    append_le(out, value, 8);
  }
  return out;
}

Bytes string(const std::string& text) {
  Bytes out{0x0d};  // StringPrefix, then ASCII and a NUL
  for (char c : text) out.push_back(static_cast<uint8_t>(c));
  out.push_back(0);
  return out;
}

Bytes eisa_id(const std::string& id) {
  // Three letters of 5 bits each ('A' = 1), then four hex digits; stored big-endian.
  auto letter = [&](size_t i) { return static_cast<uint32_t>(id.at(i) - '@') & 0x1f; };
  const uint32_t vendor = letter(0) << 10 | letter(1) << 5 | letter(2);
  const uint32_t product = static_cast<uint32_t>(std::stoul(id.substr(3, 4), nullptr, 16));
  const uint32_t be = vendor << 16 | product;
  Bytes out{kDWordPrefix};
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(be >> shift));
  return out;
}

Bytes name(const std::string& path, const Bytes& value) {
  Bytes out{kNameOp};
  append(out, name_string(path));
  append(out, value);
  return out;
}

Bytes scope(const std::string& path, const Bytes& terms) {
  Bytes body = name_string(path);
  append(body, terms);
  return with_length({kScopeOp}, body);
}

Bytes device(const std::string& path, const Bytes& terms) {
  Bytes body = name_string(path);
  append(body, terms);
  return with_length({kExtOpPrefix, kDeviceOp}, body);
}

Bytes package(const std::vector<Bytes>& elements) {
  Bytes body{static_cast<uint8_t>(elements.size())};
  for (const Bytes& e : elements) append(body, e);
  return with_length({kPackageOp}, body);
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
  Bytes data;
  for (const Bytes& d : descriptors) append(data, d);
  // End tag: small item 0x0f with length 1; a zero checksum means "treat as correct".
  data.push_back(0x79);
  data.push_back(0x00);
  Bytes body = integer(data.size());
  append(body, data);
  return with_length({kBufferOp}, body);
}

Bytes io_port(uint16_t base, uint8_t length) {
  // Small item 0x08 (I/O port), length 7: decodes 16 address bits, min = max = base.
  Bytes out{0x47, 0x01};
  append_le(out, base, 2);
  append_le(out, base, 2);
  out.push_back(0x01);  // alignment
  out.push_back(length);
  return out;
}

Bytes interrupt(uint32_t gsi) {
  // Large item 0x09 (extended interrupt), 6 data bytes: consumer, edge-triggered, active
  // high, exclusive; one interrupt number, which Linux takes as a GSI (the IOAPIC pin).
  Bytes out{0x89, 0x06, 0x00, 0x03, 0x01};
  append_le(out, gsi, 4);
  return out;
}

Bytes memory32_fixed(uint32_t base, uint32_t length) {
  // Large item 0x06 (32-bit fixed memory range), 9 data bytes: read-write, base, length.
  Bytes out{0x86, 0x09, 0x00, 0x01};
  append_le(out, base, 4);
  append_le(out, length, 4);
  return out;
}

}  // namespace shoal::aml

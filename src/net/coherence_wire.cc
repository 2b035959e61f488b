#include "net/coherence_wire.hpp"

#include <cstring>

namespace shoal::net {

using Msg = CoherenceMessage;

namespace {

bool names_taker(Msg::Type t) {
  return t == Msg::Type::kRecall || t == Msg::Type::kInvalidate;
}

}  // namespace

Frame encode_coherence(const Msg& m) {
  Frame f{MessageType::kCoherence, 0, std::vector<uint8_t>(kCoherenceHeaderBytes, 0)};
  f.payload[0] = static_cast<uint8_t>(m.type);
  f.payload[1] = static_cast<uint8_t>(m.access);
  f.payload[2] = static_cast<uint8_t>(m.payload);
  const NodeId named = m.type == Msg::Type::kGrant ? m.source
                       : names_taker(m.type)       ? m.taker
                                                   : Msg::kNoSource;
  f.payload[3] = named != Msg::kNoSource ? static_cast<uint8_t>(named + 1) : 0;
  std::memcpy(&f.payload[4], &m.from, 2);
  std::memcpy(&f.payload[6], &m.to, 2);
  std::memcpy(&f.payload[8], &m.page, 8);
  if (m.payload == Msg::Payload::kData)
    f.payload.insert(f.payload.end(), m.data.begin(), m.data.end());
  return f;
}

Result<Msg> decode_coherence(const Frame& f) {
  const auto& p = f.payload;
  if (f.type != MessageType::kCoherence) return Error("not a coherence frame");
  if (p.size() < kCoherenceHeaderBytes) return Error("coherence message is truncated");
  if (p[0] > static_cast<uint8_t>(Msg::Type::kDecline))
    return Error("coherence message type " + std::to_string(p[0]) + " is unknown");
  if (p[1] > static_cast<uint8_t>(Access::kWrite))
    return Error("coherence access " + std::to_string(p[1]) + " is unknown");
  if (p[2] > static_cast<uint8_t>(Msg::Payload::kData))
    return Error("coherence payload kind " + std::to_string(p[2]) + " is unknown");
  const auto type = static_cast<Msg::Type>(p[0]);
  if (p[3] > kMaxPodHosts || (p[3] != 0 && type != Msg::Type::kGrant && !names_taker(type)))
    return Error("coherence message: source " + std::to_string(p[3]) + " is out of range");
  Msg m{type, 0, 0, 0, static_cast<Access>(p[1]), static_cast<Msg::Payload>(p[2]), {}};
  std::memcpy(&m.from, &p[4], 2);
  std::memcpy(&m.to, &p[6], 2);
  std::memcpy(&m.page, &p[8], 8);
  if (p[3] != 0) (type == Msg::Type::kGrant ? m.source : m.taker) = static_cast<NodeId>(p[3] - 1);
  const size_t data = p.size() - kCoherenceHeaderBytes;
  if (m.payload == Msg::Payload::kData ? data != kPageBytes : data != 0)
    return Error("coherence message carries " + std::to_string(data) + " bytes of page data; " +
                 (m.payload == Msg::Payload::kData ? "expected 4096" : "expected none"));
  if (data) m.data.assign(p.begin() + kCoherenceHeaderBytes, p.end());
  return m;
}

}  // namespace shoal::net

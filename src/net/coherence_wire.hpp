// CoherenceMessage on the wire: the payload of a kCoherence frame.
//
//   offset 0  u8  type     CoherenceMessage::Type
//          1  u8  access   Access
//          2  u8  payload  CoherenceMessage::Payload
//          3  u8  source   kGrant: the source host + 1; kRecall, kInvalidate: the host the page
//                          is taken for + 1 (0: none); 0 for every other type
//          4  u16 from     node
//          6  u16 to       node
//          8  u64 page     guest page number
//         16  the page's 4096 bytes when payload is kData, nothing otherwise
//
// The frame header carries the wire version; decode_coherence() checks every field's range.
#pragma once

#include "memory/coherence.hpp"
#include "net/frame.hpp"
#include "shoal/size.hpp"

namespace shoal::net {

inline constexpr size_t kCoherenceHeaderBytes = 16;
inline constexpr size_t kPageBytes = kPageSize;

Frame encode_coherence(const CoherenceMessage& m);
Result<CoherenceMessage> decode_coherence(const Frame& frame);

}  // namespace shoal::net

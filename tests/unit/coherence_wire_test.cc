#include "net/coherence_wire.hpp"

#include <gtest/gtest.h>

namespace shoal::net {
namespace {

using Msg = CoherenceMessage;

TEST(CoherenceWire, RoundTripsThroughFrames) {
  Msg grant{Msg::Type::kGrant,           0x123456789, 2, 5, Access::kWrite, Msg::Payload::kData,
            PageBytes(kPageBytes, 0x5a), 31};
  FrameDecoder d;
  ASSERT_TRUE(d.feed(encode_frame(encode_coherence(grant))).ok());
  auto f = d.next();
  ASSERT_TRUE(f.has_value());
  auto m = decode_coherence(*f);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->type, Msg::Type::kGrant);
  EXPECT_EQ(m->page, 0x123456789u);
  EXPECT_EQ(m->from, 2);
  EXPECT_EQ(m->to, 5);
  EXPECT_EQ(m->access, Access::kWrite);
  EXPECT_EQ(m->data, grant.data);
  EXPECT_EQ(m->source, 31);
  // A dormant page's grant is 16 bytes: no page on the wire, and no source.
  Msg zero{Msg::Type::kGrant, 7, 0, 1, Access::kRead, Msg::Payload::kZero, {}};
  EXPECT_EQ(encode_coherence(zero).payload.size(), kCoherenceHeaderBytes);
  auto z = decode_coherence(encode_coherence(zero));
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->source, Msg::kNoSource);
  // A recall names the host the page is taken for.
  Msg recall{Msg::Type::kRecall, 9, 1, 0, Access::kWrite};
  recall.taker = 30;
  auto r = decode_coherence(encode_coherence(recall));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->taker, 30);
  EXPECT_EQ(r->source, Msg::kNoSource);
}

TEST(CoherenceWire, RejectsOutOfRangeFieldsAndWrongSizes) {
  Msg m{Msg::Type::kRecallAck, 1, 0, 1, Access::kNone, Msg::Payload::kData, PageBytes(kPageBytes)};
  Frame f = encode_coherence(m);
  Frame bad = f;
  bad.payload[0] = 99;
  EXPECT_NE(decode_coherence(bad).error().message().find("type 99"), std::string::npos);
  bad = f;
  bad.payload[1] = 7;
  EXPECT_FALSE(decode_coherence(bad).ok());
  bad = f;
  bad.payload.pop_back();
  EXPECT_NE(decode_coherence(bad).error().message().find("expected 4096"), std::string::npos);
  bad = f;
  bad.payload[2] = static_cast<uint8_t>(Msg::Payload::kZero);
  EXPECT_NE(decode_coherence(bad).error().message().find("expected none"), std::string::npos);
  bad = f;
  bad.payload.resize(8);
  EXPECT_FALSE(decode_coherence(bad).ok());
  bad = f;
  bad.payload[3] = 1;  // only a grant, a recall or an invalidation names a host
  EXPECT_NE(decode_coherence(bad).error().message().find("source 1"), std::string::npos);
  Frame grant =
      encode_coherence(Msg{Msg::Type::kGrant, 1, 0, 1, Access::kRead, Msg::Payload::kZero, {}, 3});
  grant.payload[3] = kMaxPodHosts + 1;
  EXPECT_NE(decode_coherence(grant).error().message().find("out of range"), std::string::npos);
  bad = f;
  bad.type = MessageType::kPing;
  EXPECT_FALSE(decode_coherence(bad).ok());
}

}  // namespace
}  // namespace shoal::net

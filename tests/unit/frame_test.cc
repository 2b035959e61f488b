#include "net/frame.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace shoal::net {
namespace {

Frame frame(MessageType t, uint32_t req, size_t n, uint8_t fill) {
  return Frame{t, req, std::vector<uint8_t>(n, fill)};
}

TEST(Frame, RoundTripsInOneFeed) {
  auto bytes = encode_frame(frame(MessageType::kCoherence, 7, 4096, 0xab));
  ASSERT_EQ(bytes.size(), kHeaderBytes + 4096);
  FrameDecoder d;
  ASSERT_TRUE(d.feed(bytes).ok());
  auto f = d.next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, MessageType::kCoherence);
  EXPECT_EQ(f->request, 7u);
  EXPECT_EQ(f->payload, std::vector<uint8_t>(4096, 0xab));
  EXPECT_FALSE(d.next().has_value());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(Frame, ByteByByteAndBackToBack) {
  std::vector<uint8_t> stream;
  for (int i = 0; i < 3; ++i) {
    auto b = encode_frame(frame(MessageType::kPing, i, i * 10, static_cast<uint8_t>(i)));
    stream.insert(stream.end(), b.begin(), b.end());
  }
  FrameDecoder d;
  std::vector<Frame> got;
  for (uint8_t byte : stream) {
    ASSERT_TRUE(d.feed({&byte, 1}).ok());
    while (auto f = d.next()) got.push_back(*f);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2].request, 2u);
  EXPECT_EQ(got[2].payload.size(), 20u);
}

TEST(Frame, GarbledMagicIsRefused) {
  auto b = encode_frame(frame(MessageType::kPing, 0, 4, 0));
  b[0] ^= 0xff;
  FrameDecoder d;
  auto s = d.feed(b);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("bad frame magic"), std::string::npos);
  EXPECT_FALSE(d.next().has_value());
  EXPECT_FALSE(d.feed(encode_frame(frame(MessageType::kPing, 0, 0, 0))).ok());  // stays failed
}

TEST(Frame, OtherWireVersionIsRefused) {
  auto b = encode_frame(frame(MessageType::kPing, 0, 0, 0));
  b[4] = static_cast<uint8_t>(kWireVersion + 1);
  FrameDecoder d;
  auto s = d.feed(b);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("wire version " + std::to_string(kWireVersion + 1) +
                                     " is not supported"),
            std::string::npos);
}

TEST(Frame, OversizedFrameIsRefusedFromItsHeaderAlone) {
  auto b = encode_frame(frame(MessageType::kCoherence, 0, 0, 0));
  const uint32_t huge = kMaxPayload + 1;
  std::memcpy(b.data() + 8, &huge, 4);
  FrameDecoder d;
  auto s = d.feed(b);  // no payload follows: refused before buffering it
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("exceeds"), std::string::npos);
}

TEST(Frame, BadSecondHeaderIsCaught) {
  auto a = encode_frame(frame(MessageType::kPing, 1, 3, 1));
  auto b = encode_frame(frame(MessageType::kPing, 2, 3, 2));
  b[1] = 0;
  a.insert(a.end(), b.begin(), b.end());
  FrameDecoder d;
  ASSERT_TRUE(d.feed(a).ok());
  EXPECT_TRUE(d.next().has_value());
  EXPECT_FALSE(d.next().has_value());
  ASSERT_TRUE(d.error().has_value());
  EXPECT_NE(d.error()->message().find("bad frame magic"), std::string::npos);
}

}  // namespace
}  // namespace shoal::net

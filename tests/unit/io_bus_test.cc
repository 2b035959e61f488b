#include "devices/io_bus.hpp"

#include <gtest/gtest.h>

namespace shoal {
namespace {

class ByteDevice : public BusDevice {
 public:
  explicit ByteDevice(uint8_t id) : id_(id) {}
  void read(uint64_t offset, std::span<uint8_t> d) override {
    for (auto& b : d) b = static_cast<uint8_t>(id_ + offset);
  }
  void write(uint64_t, std::span<const uint8_t>) override { ++writes; }
  int writes = 0;

 private:
  uint8_t id_;
};

TEST(IoBus, RoutesByRangeWithOffsets) {
  IoBus bus("pio");
  auto a = std::make_shared<ByteDevice>(0x10), b = std::make_shared<ByteDevice>(0x40);
  ASSERT_TRUE(bus.insert(0x60, 5, a, "a").ok());
  ASSERT_TRUE(bus.insert(0x3f8, 8, b, "b").ok());
  uint8_t v = 0;
  EXPECT_TRUE(bus.read(0x64, {&v, 1}));
  EXPECT_EQ(v, 0x14);
  EXPECT_TRUE(bus.read(0x3ff, {&v, 1}));
  EXPECT_EQ(v, 0x47);
  EXPECT_FALSE(bus.read(0x400, {&v, 1}));
  EXPECT_EQ(v, 0xff);
  EXPECT_FALSE(bus.read(0x5f, {&v, 1}));
  EXPECT_EQ(*bus.device_name(0x3f9), "b");
  EXPECT_EQ(bus.device_name(0x3f7), nullptr);
}

TEST(IoBus, AccessStraddlingTheEndIsUnclaimed) {
  IoBus bus("pio");
  auto a = std::make_shared<ByteDevice>(0);
  ASSERT_TRUE(bus.insert(0x3f8, 8, a, "a").ok());
  uint8_t d[2] = {};
  EXPECT_FALSE(bus.write(0x3ff, d));
  EXPECT_EQ(a->writes, 0);
  EXPECT_TRUE(bus.write(0x3fe, d));
}

TEST(IoBus, RejectsOverlapsNamingBothDevices) {
  IoBus bus("pio");
  ASSERT_TRUE(bus.insert(0x3f8, 8, std::make_shared<ByteDevice>(0), "uart").ok());
  auto s = bus.insert(0x3fc, 2, std::make_shared<ByteDevice>(0), "other");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("other"), std::string::npos);
  EXPECT_NE(s.error().message().find("uart"), std::string::npos);
  EXPECT_FALSE(bus.insert(0x10, 0, std::make_shared<ByteDevice>(0), "empty").ok());
  EXPECT_TRUE(bus.insert(0x3f0, 8, std::make_shared<ByteDevice>(0), "below").ok());
}

}  // namespace
}  // namespace shoal

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "vcpu/exit_handler.hpp"

namespace shoal {
namespace {

struct Access {
  uint64_t offset;
  std::vector<uint8_t> bytes;
};

class RecordingDevice : public BusDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override {
    reads.push_back({offset, {}});
    for (auto& b : data) b = 0x5a;
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.push_back({offset, {data.begin(), data.end()}});
  }
  std::vector<Access> reads, writes;
};

class ExitHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pio.insert(0x3f8, 8, port_dev, "uart").ok());
    ASSERT_TRUE(mmio.insert(0xd0000000, 0x1000, mmio_dev, "mmio").ok());
  }
  std::shared_ptr<RecordingDevice> port_dev = std::make_shared<RecordingDevice>();
  std::shared_ptr<RecordingDevice> mmio_dev = std::make_shared<RecordingDevice>();
  IoBus pio{"pio"}, mmio{"mmio"};
  ExitBuses buses{pio, mmio};
};

TEST_F(ExitHandlerTest, RepOutsIsSplitIntoAccesses) {
  uint8_t data[3] = {'a', 'b', 'c'};
  auto a = handle_exit(IoExit{0x3f8, 1, true, 3, data}, buses);
  EXPECT_TRUE(std::holds_alternative<ExitContinue>(a));
  ASSERT_EQ(port_dev->writes.size(), 3u);
  EXPECT_EQ(port_dev->writes[2].bytes, std::vector<uint8_t>{'c'});
  EXPECT_EQ(port_dev->writes[0].offset, 0u);
}

TEST_F(ExitHandlerTest, PortInFillsTheExitData) {
  uint8_t data[2] = {0, 0};
  handle_exit(IoExit{0x3fd, 2, false, 1, data}, buses);
  EXPECT_EQ(data[0], 0x5a);
  EXPECT_EQ(port_dev->reads.at(0).offset, 5u);
}

TEST_F(ExitHandlerTest, UnclaimedPortReadsAllOnes) {
  uint8_t data[4] = {};
  auto a = handle_exit(IoExit{0x80, 4, false, 1, data}, buses);
  EXPECT_TRUE(std::holds_alternative<ExitContinue>(a));
  EXPECT_EQ(data[0], 0xff);
  EXPECT_EQ(data[3], 0xff);
}

TEST_F(ExitHandlerTest, MmioGoesToTheMmioBus) {
  uint8_t data[4] = {1, 2, 3, 4};
  handle_exit(MmioExit{0xd0000010, true, data}, buses);
  ASSERT_EQ(mmio_dev->writes.size(), 1u);
  EXPECT_EQ(mmio_dev->writes[0].offset, 0x10u);
  EXPECT_TRUE(port_dev->writes.empty());
}

TEST_F(ExitHandlerTest, TripleFaultFailsWithItsName) {
  auto a = handle_exit(ShutdownExit{}, buses);
  ASSERT_TRUE(std::holds_alternative<ExitFail>(a));
  EXPECT_NE(std::get<ExitFail>(a).reason.find("triple fault"), std::string::npos);
}

TEST_F(ExitHandlerTest, PowerOffAndResetEndTheGuest) {
  EXPECT_TRUE(std::holds_alternative<ExitPowerOff>(
      handle_exit(SystemEventExit{KVM_SYSTEM_EVENT_SHUTDOWN}, buses)));
  EXPECT_TRUE(std::holds_alternative<ExitReset>(
      handle_exit(SystemEventExit{KVM_SYSTEM_EVENT_RESET}, buses)));
  EXPECT_TRUE(std::holds_alternative<ExitFail>(
      handle_exit(SystemEventExit{KVM_SYSTEM_EVENT_CRASH}, buses)));
  EXPECT_TRUE(std::holds_alternative<ExitContinue>(handle_exit(InterruptedExit{}, buses)));
  EXPECT_TRUE(std::holds_alternative<ExitFail>(handle_exit(RunErrorExit{EFAULT}, buses)));
}

}  // namespace
}  // namespace shoal

#include "devices/uart16550.hpp"

#include <gtest/gtest.h>

#include <string>

namespace shoal {
namespace {

class UartTest : public ::testing::Test {
 protected:
  uint8_t rd(uint8_t reg) {
    uint8_t v = 0;
    uart.read(reg, {&v, 1});
    return v;
  }
  void wr(uint8_t reg, uint8_t v) { uart.write(reg, {&v, 1}); }

  std::string out;
  int irqs = 0;
  Uart16550 uart{[this](uint8_t b) { out.push_back(static_cast<char>(b)); }, [this] { ++irqs; }};
};

TEST_F(UartTest, TransmitIsImmediateAndLsrSaysEmpty) {
  wr(Uart16550::kData, 'h');
  wr(Uart16550::kData, 'i');
  EXPECT_EQ(out, "hi");
  EXPECT_EQ(rd(Uart16550::kLsr), Uart16550::kLsrThre | Uart16550::kLsrTemt);
}

TEST_F(UartTest, DivisorLatchShadowsDataAndIer) {
  wr(Uart16550::kLcr, 0x80);
  wr(Uart16550::kData, 0x01);  // DLL, not transmitted
  wr(Uart16550::kIer, 0x00);   // DLM
  EXPECT_EQ(rd(Uart16550::kData), 0x01);
  wr(Uart16550::kLcr, 0x03);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(rd(Uart16550::kLcr), 0x03);
  EXPECT_EQ(rd(Uart16550::kIer), 0x00);
}

TEST_F(UartTest, ScratchAndLoopbackPassTheLinuxProbe) {
  wr(Uart16550::kScr, 0xa5);
  EXPECT_EQ(rd(Uart16550::kScr), 0xa5);
  // 8250 autoconfig: MCR = LOOP | OUT2 | RTS, then MSR & 0xf0 must read 0x90.
  wr(Uart16550::kMcr, 0x1a);
  EXPECT_EQ(rd(Uart16550::kMsr) & 0xf0, 0x90);
  wr(Uart16550::kData, 'x');  // loops back into the receiver
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(rd(Uart16550::kLsr) & Uart16550::kLsrDr, Uart16550::kLsrDr);
  EXPECT_EQ(rd(Uart16550::kData), 'x');
}

TEST_F(UartTest, FifoEnableShowsIn16550AIir) {
  EXPECT_EQ(rd(Uart16550::kIirFcr), Uart16550::kIirNone);
  wr(Uart16550::kIirFcr, 0x07);
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0xc0, 0xc0);
}

TEST_F(UartTest, ThreInterruptRaisesAndIsAcknowledgedByIirRead) {
  wr(Uart16550::kIer, Uart16550::kIerThre);
  EXPECT_EQ(irqs, 1);
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirThre);
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirNone);
  wr(Uart16550::kData, 'a');
  EXPECT_EQ(irqs, 2);
  wr(Uart16550::kIer, 0);
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirNone);
}

TEST_F(UartTest, ReceivedBytesRaiseRdaFirst) {
  wr(Uart16550::kIer, Uart16550::kIerRda | Uart16550::kIerThre);
  const int before = irqs;
  rd(Uart16550::kIirFcr);  // ack THRE
  const uint8_t in[] = {'o', 'k'};
  uart.receive(in);
  EXPECT_EQ(irqs, before + 1);
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirRda);
  EXPECT_EQ(rd(Uart16550::kData), 'o');
  EXPECT_EQ(rd(Uart16550::kData), 'k');
  EXPECT_EQ(rd(Uart16550::kLsr) & Uart16550::kLsrDr, 0);
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirNone);
}

}  // namespace
}  // namespace shoal

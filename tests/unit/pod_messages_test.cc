// The vCPU move and interrupt messages (pod/pod_messages.hpp): what each carries, and bad input
// answered with an error naming what was wrong.
#include <gtest/gtest.h>

#include "kvm/vcpu_state.hpp"
#include "pod/pod_messages.hpp"

namespace shoal {
namespace {

using net::MessageType;

TEST(VcpuMoveMessage, EveryKindRoundTrips) {
  for (MessageType t :
       {MessageType::kPodMove, MessageType::kVcpuMigrate, MessageType::kVcpuPlaced}) {
    auto m = decode_vcpu_move(encode_vcpu_move(t, {7, 2, 41, {}}));
    ASSERT_TRUE(m.ok()) << m.error().message();
    EXPECT_EQ(m->vcpu, 7u);
    EXPECT_EQ(m->host, 2u);
    EXPECT_EQ(m->version, 41u);
    EXPECT_TRUE(m->state.empty());
  }
  VcpuState state;
  state.id = 7;
  state.regs.rip = 0x123456;
  auto m = decode_vcpu_move(
      encode_vcpu_move(MessageType::kVcpuArrive, {7, 1, 42, encode_vcpu_state(state)}));
  ASSERT_TRUE(m.ok()) << m.error().message();
  auto back = decode_vcpu_state(m->state);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->regs.rip, 0x123456u);
}

std::string error_of(const net::Frame& f) {
  auto m = decode_vcpu_move(f);
  return m.ok() ? "accepted" : m.error().message();
}

TEST(VcpuMoveMessage, BadInputIsRefusedWithTheReason) {
  EXPECT_NE(error_of(encode_vcpu_move(MessageType::kPodMove, {254, 0, 0, {}})).find("vcpu 254"),
            std::string::npos);
  EXPECT_NE(error_of(encode_vcpu_move(MessageType::kPodMove, {0, 32, 0, {}})).find("host 32"),
            std::string::npos);
  // Only an arrival carries a state, and it always does, within the limit.
  EXPECT_NE(error_of(encode_vcpu_move(MessageType::kVcpuPlaced, {0, 1, 1, {1, 2, 3}}))
                .find("unexpected state bytes"),
            std::string::npos);
  EXPECT_NE(error_of(encode_vcpu_move(MessageType::kVcpuArrive, {0, 1, 1, {}})).find("state of 0"),
            std::string::npos);
  EXPECT_NE(error_of(encode_vcpu_move(MessageType::kVcpuArrive,
                                      {0, 1, 1, std::vector<uint8_t>(kMaxVcpuStateBytes + 1)}))
                .find("state of"),
            std::string::npos);
  net::Frame short_frame = encode_vcpu_move(MessageType::kVcpuMigrate, {0, 1, 1, {}});
  short_frame.payload.resize(15);
  EXPECT_NE(error_of(short_frame).find("shorter than its header"), std::string::npos);
  EXPECT_NE(error_of(net::Frame{MessageType::kPodStatus, 0, std::vector<uint8_t>(16)})
                .find("message type"),
            std::string::npos);
}

TEST(InterruptMessage, RoundTripsAndRefusesWhatNoLapicTakes) {
  for (uint8_t v : {uint8_t{16}, uint8_t{0x40}, uint8_t{255}}) {
    auto m = decode_interrupt(encode_interrupt({253, v}));
    ASSERT_TRUE(m.ok()) << m.error().message();
    EXPECT_EQ(m->vcpu, 253u);
    EXPECT_EQ(m->vector, v);
    EXPECT_EQ(m->mode, ApicDelivery::kFixed);
  }
  // An NMI, an INIT and a SIPI (Linux's trampoline page, 0x9a000 >> 12) keep their mode.
  for (InterruptMessage in :
       {InterruptMessage{1, 2, ApicDelivery::kNmi}, InterruptMessage{1, 0, ApicDelivery::kInit},
        InterruptMessage{1, 0x9a, ApicDelivery::kStartup},
        InterruptMessage{1, 0, ApicDelivery::kStartup}}) {
    auto m = decode_interrupt(encode_interrupt(in));
    ASSERT_TRUE(m.ok()) << m.error().message();
    EXPECT_EQ(m->mode, in.mode);
    EXPECT_EQ(m->vector, in.vector);
  }
  auto error = [](const net::Frame& f) {
    auto m = decode_interrupt(f);
    return m.ok() ? std::string("accepted") : m.error().message();
  };
  EXPECT_NE(error(encode_interrupt({254, 0x40})).find("vcpu 254"), std::string::npos);
  EXPECT_NE(error(encode_interrupt({0, 15})).find("vector 15"), std::string::npos);
  EXPECT_NE(error(encode_interrupt({0, 0})).find("vector 0"), std::string::npos);
  EXPECT_NE(error(encode_interrupt({0, 2})).find("vector 2 as a fixed"), std::string::npos);
  EXPECT_NE(error(encode_interrupt({0, 0x40, ApicDelivery::kNmi})).find("vector 64 with an NMI"),
            std::string::npos);
  EXPECT_NE(error(encode_interrupt({0, 3, ApicDelivery::kInit})).find("vector 3 with an INIT"),
            std::string::npos);
  net::Frame mode = encode_interrupt({0, 0x40});
  mode.payload[5] = 7;  // lowest priority, SMI, ExtINT: nothing shoal sends
  EXPECT_NE(error(mode).find("delivery mode 7"), std::string::npos);
  net::Frame reserved = encode_interrupt({0, 0x40});
  reserved.payload[6] = 1;
  EXPECT_NE(error(reserved).find("reserved"), std::string::npos);
  net::Frame longer = encode_interrupt({0, 0x40});
  longer.payload.push_back(0);
  EXPECT_NE(error(longer).find("9 bytes"), std::string::npos);
  EXPECT_NE(error(net::Frame{MessageType::kPodStatus, 0, std::vector<uint8_t>(8)}).find("type"),
            std::string::npos);
}

}  // namespace
}  // namespace shoal

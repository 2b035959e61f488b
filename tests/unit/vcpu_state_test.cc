// The vCPU and VM state encodings: round trips, and bad input answered with the field's name.
#include "kvm/vcpu_state.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "shoal/wire_bytes.hpp"

namespace shoal {
namespace {

VcpuState sample() {
  VcpuState v;
  v.id = 3;
  v.regs.rip = 0x100000;
  v.regs.rax = 42;
  v.sregs.cr0 = 0x80050033;
  v.xsave[0] = 0x37f;
  v.xcrs.nr_xcrs = 1;
  v.xcrs.xcrs[0].value = 7;
  v.lapic.regs[0x20] = 3;
  v.events.exception.injected = 1;
  v.msrs = {{0x10, 0, 123456789}, {0xc0000080, 0, 0x500}};
  return v;
}

std::string error_of(const std::vector<uint8_t>& b) {
  auto r = decode_vcpu_state(b);
  return r.ok() ? "(decoded)" : r.error().message();
}

TEST(VcpuStateEncoding, RoundTrips) {
  const VcpuState v = sample();
  const auto bytes = encode_vcpu_state(v);
  auto back = decode_vcpu_state(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->id, 3u);
  EXPECT_EQ(back->regs.rip, 0x100000u);
  EXPECT_EQ(back->sregs.cr0, 0x80050033u);
  EXPECT_EQ(back->xsave[0], 0x37fu);
  EXPECT_EQ(back->xcrs.xcrs[0].value, 7u);
  EXPECT_EQ(back->lapic.regs[0x20], 3);
  ASSERT_EQ(back->msrs.size(), 2u);
  EXPECT_EQ(back->msrs[1].index, 0xc0000080u);
  EXPECT_EQ(back->msrs[0].data, 123456789u);
  EXPECT_EQ(encode_vcpu_state(*back), bytes);
}

TEST(VcpuStateEncoding, BadInputNamesTheField) {
  auto bytes = encode_vcpu_state(sample());
  EXPECT_EQ(error_of({}), "vcpu state: not a shoal vcpu state");
  auto v3 = bytes;
  v3[4] = 3;  // version
  EXPECT_EQ(error_of(v3), "vcpu state: version 3, this build reads 1 to 2");
  auto cut = bytes;
  cut.resize(cut.size() - 3);
  EXPECT_EQ(error_of(cut), "vcpu state: msrs: truncated");
  auto size = bytes;
  size[12] = 9;  // mp_state's size field
  EXPECT_EQ(error_of(size), "vcpu state: mp_state: 9 bytes, this build expects 4");
  auto trail = bytes;
  trail.push_back(0);
  EXPECT_EQ(error_of(trail), "vcpu state: trailing bytes");
  VcpuState many = sample();
  many.msrs.resize(kMaxStateMsrs + 1);
  EXPECT_EQ(error_of(encode_vcpu_state(many)), "vcpu state: msrs: 1025 entries, at most 1024");
  std::vector<uint8_t> huge(kMaxVcpuStateBytes + 1);
  EXPECT_EQ(error_of(huge), "vcpu state: 65537 bytes, at most 65536");
}

// Where the LAPIC part's block mask sits in sample()'s encoding (one XSAVE block non-zero).
size_t sample_lapic_mask_offset() {
  return 12 + (4 + sizeof(kvm_mp_state)) + (4 + sizeof(kvm_regs)) + (4 + sizeof(kvm_sregs)) +
         (4 + 8 + 64) + (4 + sizeof(kvm_xcrs)) + (4 + sizeof(kvm_debugregs)) + 4;
}

TEST(VcpuStateEncoding, ZeroBlocksOfXsaveAndLapicStayOffTheWire) {
  VcpuState v = sample();
  const size_t one_block = encode_vcpu_state(v).size();
  v.xsave[1023] = 0xabcd;     // the last 64-byte block of the 4 KiB
  v.lapic.regs[1023] = 0x5a;  // and of the LAPIC page
  const auto bytes = encode_vcpu_state(v);
  EXPECT_EQ(bytes.size(), one_block + 2 * 64);
  EXPECT_LT(bytes.size(), sizeof(v.xsave) + sizeof(v.lapic));
  auto back = decode_vcpu_state(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->xsave, v.xsave);
  EXPECT_EQ(std::memcmp(back->lapic.regs, v.lapic.regs, sizeof v.lapic.regs), 0);
}

TEST(VcpuStateEncoding, AVersionOneStateWithWholePartsIsStillRead) {
  const VcpuState v = sample();
  WireWriter w;
  w.put<uint32_t>(0x43564853).put<uint32_t>(1).put(v.id);
  auto whole = [&](const auto& part) {
    w.put<uint32_t>(sizeof part).put_bytes(&part, sizeof part);
  };
  whole(v.mp_state), whole(v.regs), whole(v.sregs), whole(v.xsave), whole(v.xcrs);
  whole(v.debugregs), whole(v.lapic), whole(v.events);
  w.put<uint32_t>(static_cast<uint32_t>(v.msrs.size()));
  for (const kvm_msr_entry& m : v.msrs) w.put(m.index).put<uint64_t>(m.data);
  auto back = decode_vcpu_state(w.take());
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(encode_vcpu_state(*back), encode_vcpu_state(v));
}

TEST(VcpuStateEncoding, ABlockMaskBeyondThePartIsRefused) {
  auto bytes = encode_vcpu_state(sample());
  const size_t at = sample_lapic_mask_offset();
  ASSERT_EQ(bytes[at], 0x01);  // sample()'s LAPIC byte 0x20: block 0 (the mask is little-endian)
  bytes[at + 2] |= 0x01;       // bit 16: the LAPIC page has blocks 0 to 15
  EXPECT_EQ(error_of(bytes), "vcpu state: lapic: block mask names block 16 of 16");
}

TEST(VcpuStateEncoding, AZeroBlockSentAnywayIsRefused) {
  auto bytes = encode_vcpu_state(sample());
  const size_t at = sample_lapic_mask_offset();
  std::fill_n(bytes.begin() + static_cast<std::ptrdiff_t>(at + 8), 64, 0);  // block 0's bytes
  EXPECT_EQ(error_of(bytes), "vcpu state: lapic: block 0 is sent but all zeros");
}

TEST(VmStateEncoding, RoundTripsAndChecksTheChips) {
  VmState m;
  m.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  m.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  m.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  m.clock.clock = 987654321;
  m.pit.channels[0].count = 0x10000;
  auto bytes = encode_vm_state(m);
  auto back = decode_vm_state(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->clock.clock, 987654321u);
  EXPECT_EQ(back->pit.channels[0].count, 0x10000u);
  m.ioapic.chip_id = KVM_IRQCHIP_PIC_MASTER;
  auto bad = decode_vm_state(encode_vm_state(m));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message(), "vm state: irqchip ids do not match their places");
}

}  // namespace
}  // namespace shoal

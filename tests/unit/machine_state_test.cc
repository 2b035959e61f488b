// A machine's state section (machine/machine_state.hpp): it round-trips, with the CPUID table
// the vCPUs were made from; version 1 (no table) still reads; bad tables are refused by field.
#include "machine/machine_state.hpp"

#include <gtest/gtest.h>

namespace shoal {
namespace {

MachineState sample() {
  MachineState s;
  s.vm.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.vm.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.vm.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  VcpuState v;
  v.id = 0;
  v.regs.rip = 0x1234;
  s.vcpus.push_back(v);
  s.port_devices = {1, 2, 3};
  s.cpuid.resize(2);
  s.cpuid[0].function = 1;
  s.cpuid[0].ecx = 0x80000201;
  s.cpuid[1].function = 7;
  s.cpuid[1].flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  s.cpuid[1].ebx = 0x1ab;
  return s;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  auto s = decode_machine_state(bytes);
  return s.ok() ? "accepted" : s.error().message();
}

TEST(MachineState, RoundTripsWithItsCpuidTable) {
  auto s = decode_machine_state(encode_machine_state(sample()));
  ASSERT_TRUE(s.ok()) << s.error().message();
  ASSERT_EQ(s->vcpus.size(), 1u);
  EXPECT_EQ(s->vcpus[0].regs.rip, 0x1234u);
  EXPECT_EQ(s->port_devices, (std::vector<uint8_t>{1, 2, 3}));
  ASSERT_EQ(s->cpuid.size(), 2u);
  EXPECT_EQ(s->cpuid[0].function, 1u);
  EXPECT_EQ(s->cpuid[0].ecx, 0x80000201u);
  EXPECT_EQ(s->cpuid[1].flags, static_cast<uint32_t>(KVM_CPUID_FLAG_SIGNIFCANT_INDEX));
  EXPECT_EQ(s->cpuid[1].ebx, 0x1abu);
}

TEST(MachineState, VersionOneHasNoCpuidAndBadTablesAreRefused) {
  MachineState without = sample();
  without.cpuid.clear();
  std::vector<uint8_t> v1 = encode_machine_state(without);
  v1.resize(v1.size() - 4);  // version 2 without its (empty) table is version 1
  v1[4] = 1;
  auto old = decode_machine_state(v1);
  ASSERT_TRUE(old.ok()) << old.error().message();
  EXPECT_TRUE(old->cpuid.empty());
  EXPECT_EQ(old->port_devices, (std::vector<uint8_t>{1, 2, 3}));

  const std::vector<uint8_t> good = encode_machine_state(sample());
  auto bad = good;
  bad[4] = 3;
  EXPECT_EQ(error_of(bad), "machine state: version 3, this build reads 1..2");
  MachineState many = sample();
  many.cpuid.resize(kMaxCpuidEntries + 1);
  EXPECT_EQ(error_of(encode_machine_state(many)), "machine state: cpuid: 257 entries, at most 256");
  MachineState flags = sample();
  flags.cpuid[1].flags = 0x80;
  EXPECT_EQ(error_of(encode_machine_state(flags)), "machine state: cpuid: entry 1: flags 128");
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_NE(error_of(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(n))),
              "accepted")
        << n;
}

}  // namespace
}  // namespace shoal

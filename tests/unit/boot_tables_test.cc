#include <asm/kvm_para.h>
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "arch/acpi.hpp"
#include "arch/boot_layout.hpp"
#include "arch/e820.hpp"
#include "arch/mptable.hpp"
#include "arch/x86_cpu.hpp"
#include "shoal/size.hpp"

namespace shoal {
namespace {

uint8_t byte_sum(const std::vector<uint8_t>& b, size_t from, size_t len) {
  return static_cast<uint8_t>(std::accumulate(b.begin() + from, b.begin() + from + len, 0));
}

TEST(E820, SmallGuestHasNoHighRam) {
  auto map = build_e820(GuestRam::layout(512 * MiB));
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map[0], (E820Entry{0, 0x9fc00, E820Type::kRam}));
  EXPECT_EQ(map[1], (E820Entry{0x9fc00, 0x100000 - 0x9fc00, E820Type::kReserved}));
  EXPECT_EQ(map[2], (E820Entry{0x100000, 512 * MiB - 0x100000, E820Type::kRam}));
  EXPECT_EQ(format_e820(map[0]), "[mem 0x0000000000000000-0x000000000009fbff] usable");
  EXPECT_EQ(format_e820(map[1]), "[mem 0x000000000009fc00-0x00000000000fffff] reserved");
}

TEST(E820, LargeGuestSkipsTheMmioHole) {
  auto map = build_e820(GuestRam::layout(8 * GiB));
  ASSERT_EQ(map.size(), 4u);
  EXPECT_EQ(map[2].addr + map[2].size, kMmioHoleStart);
  EXPECT_EQ(map[3], (E820Entry{kMmioHoleEnd, 8 * GiB - kMmioHoleStart, E820Type::kRam}));
  uint64_t ram = 0;
  for (auto& e : map)
    if (e.type == E820Type::kRam) ram += e.size;
  EXPECT_EQ(ram, 8 * GiB - (0x100000 - 0x9fc00));
}

TEST(MpTable, ChecksumsAndEntries) {
  auto t = build_mptable(boot::kEbdaAddr, 4);
  ASSERT_TRUE(t.ok());
  const auto& b = *t;
  EXPECT_EQ(std::memcmp(b.data(), "_MP_", 4), 0);
  EXPECT_EQ(byte_sum(b, 0, 16), 0);
  uint32_t table;
  std::memcpy(&table, &b[4], 4);
  EXPECT_EQ(table, boot::kEbdaAddr + 16);
  EXPECT_EQ(std::memcmp(&b[16], "PCMP", 4), 0);
  uint16_t length, entries;
  std::memcpy(&length, &b[20], 2);
  std::memcpy(&entries, &b[16 + 34], 2);
  EXPECT_EQ(length, b.size() - 16);
  EXPECT_EQ(byte_sum(b, 16, length), 0);
  EXPECT_EQ(entries, 4 + 1 + 1 + 16 + 2);  // CPUs, bus, IOAPIC, ISA IRQs, LINT0/1
  EXPECT_EQ(b[16 + 44 + 3], 0x03);         // CPU 0: enabled + BSP
  EXPECT_EQ(b[16 + 44 + 20 + 3], 0x01);    // CPU 1: enabled
  EXPECT_FALSE(build_mptable(boot::kEbdaAddr, 0).ok());
  EXPECT_FALSE(build_mptable(boot::kEbdaAddr, kMpTableMaxVcpus + 1).ok());
}

TEST(Acpi, TablesChecksumAndMadtListsEveryCpu) {
  auto t = build_acpi_tables(boot::kAcpiAddr, 3);
  ASSERT_TRUE(t.ok());
  const auto& b = t->bytes;
  EXPECT_EQ(std::memcmp(b.data(), "RSD PTR ", 8), 0);
  EXPECT_EQ(byte_sum(b, 0, 20), 0);
  EXPECT_EQ(byte_sum(b, 0, 36), 0);
  uint64_t xsdt;
  std::memcpy(&xsdt, &b[24], 8);
  const size_t x = xsdt - boot::kAcpiAddr;
  EXPECT_EQ(std::memcmp(&b[x], "XSDT", 4), 0);
  uint32_t xlen;
  std::memcpy(&xlen, &b[x + 4], 4);
  EXPECT_EQ(byte_sum(b, x, xlen), 0);
  ASSERT_EQ(xlen, 36u + 16u);
  uint64_t madt;
  std::memcpy(&madt, &b[x + 44], 8);
  const size_t m = madt - boot::kAcpiAddr;
  EXPECT_EQ(std::memcmp(&b[m], "APIC", 4), 0);
  uint32_t mlen;
  std::memcpy(&mlen, &b[m + 4], 4);
  EXPECT_EQ(byte_sum(b, m, mlen), 0);
  EXPECT_EQ(mlen, 44u + 3 * 8 + 12);
  EXPECT_EQ(b[m + 44 + 2 * 8 + 3], 2);  // third local APIC: APIC ID 2
  EXPECT_EQ(b[m + 44 + 3 * 8], 1);      // then the IOAPIC
}

TEST(Gdt, SegmentDecodingMatchesTheEntry) {
  const kvm_segment code64 = segment_from_gdt(gdt_entry(0xa09b, 0, 0xfffff), 0x10);
  EXPECT_EQ(code64.l, 1);
  EXPECT_EQ(code64.db, 0);
  EXPECT_EQ(code64.type, 0xb);
  EXPECT_EQ(code64.limit, 0xffffffffu);
  EXPECT_EQ(code64.present, 1);
  const kvm_segment tss = segment_from_gdt(gdt_entry(0x008b, 0x1000, 0x67), 0x20);
  EXPECT_EQ(tss.base, 0x1000u);
  EXPECT_EQ(tss.limit, 0x67u);
  EXPECT_EQ(tss.s, 0);
}

TEST(Cpuid, EachVcpuGetsItsApicId) {
  std::vector<kvm_cpuid_entry2> in(3);
  in[0].function = 1;
  in[0].ebx = 0x00ff0800;  // CLFLUSH size 8, stale count/ID
  in[0].ecx = 1;
  in[1].function = 7;
  in[1].ebx = 1u << 20;
  in[2].function = 0xb;
  auto out = guest_cpuid(in, 5, 8);
  EXPECT_EQ(out[0].ebx >> 24, 5u);
  EXPECT_EQ((out[0].ebx >> 16) & 0xff, 8u);
  EXPECT_EQ(out[0].ebx & 0xffff, 0x0800u);
  EXPECT_EQ(out[0].ecx, 1u | (1u << 31));  // hypervisor bit
  EXPECT_EQ(out[1].ebx, 1u << 20);         // other leaves untouched
  EXPECT_EQ(out[2].edx, 5u);               // x2APIC ID
}

TEST(GuestCpuid, ARestoreNeedsEveryFeatureTheGuestSaw) {
  std::vector<kvm_cpuid_entry2> host(3);
  host[0].function = 1;
  host[0].ecx = 0x00000201;
  host[0].edx = 0x178bfbff;
  host[1].function = 7;
  host[1].flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  host[1].ebx = 0x000001ab;
  host[2].function = 0x80000001;
  host[2].edx = 1u << 29;  // long mode
  EXPECT_TRUE(check_cpuid_features(host, host).ok());
  // What guest_cpuid sets (hypervisor) and the guest's own OSXSAVE do not count.
  auto saved = guest_cpuid(host, 0, 1);
  saved[0].ecx |= 1u << 27;
  EXPECT_TRUE(check_cpuid_features(saved, host).ok());
  // A feature the other host had (HLE in 7.0:EBX) and this one lacks.
  saved[1].ebx |= 1u << 4;
  auto s = check_cpuid_features(saved, host);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message(),
            "this host's KVM lacks CPU features the guest saw: CPUID.0x7.0:EBX bits 0x00000010");
  // A leaf this host has none of: every bit the guest saw there is missing.
  saved[1].ebx = host[1].ebx;
  host.pop_back();
  s = check_cpuid_features(saved, host);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("CPUID.0x80000001.0:EDX bits 0x20000000"), std::string::npos)
      << s.error().message();
  // A guest that saw 46 physical address bits cannot go on with 40.
  std::vector<kvm_cpuid_entry2> wide(1), narrow(1);
  wide[0].function = narrow[0].function = 0x80000008;
  wide[0].eax = 0x3000 | 46;
  narrow[0].eax = 0x3000 | 40;
  s = check_cpuid_features(wide, narrow);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("46 physical address bits, this host has 40"),
            std::string::npos)
      << s.error().message();
  EXPECT_TRUE(check_cpuid_features(narrow, wide).ok());
}

TEST(GuestCpuid, APodMemberSeesNoKvmFeatureOneHostsKernelKeeps) {
  std::vector<kvm_cpuid_entry2> host(2);
  host[0].function = KVM_CPUID_FEATURES;
  host[0].eax = 0x0100ffff;  // bits 0-15 and 24
  host[1].function = 1;
  host[1].ecx = 0x80000201;
  auto out = without_host_local_features(host);
  // Async PF (4, 10, 14), steal time (5), PV EOI (6), PV unhalt (7) and PV TLB flush (9) go;
  // kvmclock (0, 3, 24), NOP_IO_DELAY (1), MMU_OP (2), PV_SEND_IPI (11), POLL_CONTROL (12),
  // PV_SCHED_YIELD (13), MSI_EXT_DEST_ID (15) and the unassigned bit 8 stay.
  EXPECT_EQ(out[0].eax, 0x0100b90fu);
  EXPECT_EQ(out[1].ecx, host[1].ecx);  // other leaves untouched
  // A snapshot of a pod member restores on a host that offers more.
  EXPECT_TRUE(check_cpuid_features(out, host).ok());
}

}  // namespace
}  // namespace shoal

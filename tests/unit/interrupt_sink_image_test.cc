// The interrupt sink's bytes (arch/interrupt_sink.hpp): every IDT gate leads to its vector's
// stub, each stub reports its vector with one write to kSinkReportGpa + vector and returns
// without IRET;
// pending vectors read from a LAPIC page.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "arch/interrupt_sink.hpp"

namespace shoal::test {
namespace {

uint32_t word(const std::vector<uint8_t>& image, uint64_t offset) {
  uint32_t v;
  std::memcpy(&v, &image[offset], 4);
  return v;
}

TEST(InterruptSinkImage, EveryGateLeadsToAStubThatReportsItsVector) {
  const std::vector<uint8_t> image = build_interrupt_sink();
  ASSERT_EQ(image.size(), kSinkBytes);
  std::set<uint64_t> targets;
  for (uint32_t v = 0; v < 256; ++v) {
    const uint32_t lo = word(image, 0x100 + v * 8), hi = word(image, 0x100 + v * 8 + 4);
    EXPECT_EQ(lo >> 16, 0x08u) << v;       // the sink's code selector
    EXPECT_EQ(hi & 0xffff, 0x8e00u) << v;  // present, DPL 0, 32-bit interrupt gate
    const uint64_t stub = (hi & 0xffff0000) | (lo & 0xffff);
    ASSERT_GE(stub, kSinkGpa);
    ASSERT_LT(stub, kSinkGpa + kSinkBytes);
    const uint8_t* s = &image[stub - kSinkGpa];
    size_t at = 0;
    if (v != kSpuriousVector) {
      EXPECT_EQ(s[0], 0xa2) << v;  // mov %al, kSinkReportGpa + v: the address is the vector
      EXPECT_EQ(word(image, stub - kSinkGpa + 1), kSinkReportGpa + v);
      at = 5;
    }
    ASSERT_EQ(s[at], 0xe9) << v;
    int32_t rel;
    std::memcpy(&rel, s + at + 1, 4);
    targets.insert(stub - kSinkGpa + at + 5 + static_cast<int64_t>(rel));
  }
  // Every stub goes back to the one place that resets the stack (mov %ebp, %esp): no IRET.
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(image[*targets.begin()], 0x89);
  EXPECT_EQ(image[*targets.begin() + 1], 0xec);
}

TEST(InterruptSinkImage, StartsInFlatProtectedModeOnItsOwnStack) {
  kvm_sregs current{};
  current.apic_base = 0xfee00d00;
  const kvm_sregs s = sink_sregs(current);
  EXPECT_EQ(s.cr0, 0x11u);
  EXPECT_EQ(s.cs.selector, 0x08);
  EXPECT_EQ(s.cs.db, 1);
  EXPECT_EQ(s.idt.base, kSinkGpa + 0x100);
  EXPECT_EQ(s.idt.limit, 256 * 8 - 1);
  EXPECT_EQ(s.apic_base, 0xfee00900u);  // enabled, BSP kept, x2APIC mode left
  EXPECT_NE(sink_regs(0).rsp, sink_regs(1).rsp);
  EXPECT_EQ(sink_regs(1).rbp, sink_regs(1).rsp);
  EXPECT_LE(sink_regs(kSinkMaxVcpus - 1).rsp, kSinkGpa + kSinkBytes);
}

TEST(InterruptSinkImage, PendingVectorsComeFromTheIrr) {
  kvm_lapic_state lapic{};
  const uint32_t bits0 = 1u << 4, bits7 = 1u << 31;  // vectors 4 and 255
  std::memcpy(lapic.regs + 0x200, &bits0, 4);
  std::memcpy(lapic.regs + 0x270, &bits7, 4);
  const uint32_t isr = 1u << 9;  // vector 0x49 in service: not pending
  std::memcpy(lapic.regs + 0x120, &isr, 4);
  EXPECT_EQ(pending_vectors(lapic), (std::vector<uint8_t>{4, 255}));
  clear_pending_vectors(lapic);
  EXPECT_TRUE(pending_vectors(lapic).empty());
}

}  // namespace
}  // namespace shoal::test

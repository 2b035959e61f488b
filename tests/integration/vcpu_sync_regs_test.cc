// VcpuFd's save and restore through kvm_run (KVM_CAP_SYNC_REGS) against the ioctls, on one
// vCPU reached through two VcpuFds: one that syncs, and one on a dup of its fd that does not.
// What either writes, the other must read back; and a vCPU whose AP was never started, which
// KVM_RUN leaves before it loads anything, must still get its registers. And a restore told
// what the fd still holds (VcpuFd::Held) leaves out exactly those ioctls.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <optional>
#include <vector>

#include "kvm/kvm.hpp"
#include "support/kvm_available.hpp"

namespace shoal::test {
namespace {

constexpr uint32_t kSyncAll = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;

struct TwoViews {
  Kvm kvm;
  Vm vm;
  VcpuFd syncing;
  VcpuFd plain;
  std::vector<uint32_t> msrs;  // what save_state reads
  VcpuState base;              // the fresh vCPU's state, read through the plain view
};

// vCPU `id` of a fresh VM, seen through a syncing VcpuFd and a plain one, and its state.
void open_views(int id, std::optional<TwoViews>& out) {
  auto kvm = Kvm::open();
  ASSERT_TRUE(kvm.ok()) << kvm.error().message();
  auto vm = Vm::create(*kvm);
  ASSERT_TRUE(vm.ok()) << vm.error().message();
  ASSERT_TRUE(vm->create_platform().ok());
  auto syncing = vm->create_vcpu(id, kvm->vcpu_mmap_size());
  ASSERT_TRUE(syncing.ok()) << syncing.error().message();
  if (!syncing->syncs(kSyncAll)) GTEST_SKIP() << "skipped: this KVM has no KVM_CAP_SYNC_REGS";
  auto plain = VcpuFd::adopt(id, UniqueFd(dup(syncing->fd())), kvm->vcpu_mmap_size(), 0);
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  auto msrs = kvm->msr_index_list();
  ASSERT_TRUE(msrs.ok());
  auto base = plain->save_state(*msrs);
  ASSERT_TRUE(base.ok()) << base.error().message();
  out.emplace(TwoViews{std::move(*kvm), std::move(*vm), std::move(*syncing), std::move(*plain),
                       std::move(*msrs), std::move(*base)});
}

VcpuState changed(VcpuState s, uint64_t salt) {
  s.regs.rax = 0x1111'0000 + salt;
  s.regs.r15 = 0x2222'0000 + salt;
  s.regs.rip = 0x1000 + salt;
  s.regs.rflags = 0x2 | (salt & 1 ? 0x1 : 0);  // CF
  s.sregs.cr2 = 0x5000 + salt;
  s.sregs.ds.base = 0x6000 + salt;
  s.events.nmi.masked = salt & 1;
  s.events.flags = 0;
  s.msrs.clear();  // not what this test is about; a VM without CPUID refuses some of them
  return s;
}

void expect_same_core(const VcpuState& got, const VcpuState& want) {
  EXPECT_EQ(0, std::memcmp(&got.regs, &want.regs, sizeof got.regs)) << "regs";
  EXPECT_EQ(got.sregs.cr2, want.sregs.cr2);
  EXPECT_EQ(got.sregs.ds.base, want.sregs.ds.base);
  EXPECT_EQ(got.sregs.cr0, want.sregs.cr0);
  EXPECT_EQ(got.events.nmi.masked, want.events.nmi.masked);
  EXPECT_EQ(got.mp_state.mp_state, want.mp_state.mp_state);
}

TEST(VcpuSyncRegs, WhatOneViewWritesTheOtherReads) {
  SHOAL_REQUIRE_KVM();
  std::optional<TwoViews> v;
  open_views(0, v);
  if (!v) return;
  for (uint64_t salt = 1; salt <= 4; ++salt) {
    SCOPED_TRACE("salt " + std::to_string(salt));
    // Restored through kvm_run, read by ioctls.
    const VcpuState a = changed(v->base, salt);
    ASSERT_TRUE(v->syncing.restore_state(a).ok());
    auto read_plain = v->plain.save_state(v->msrs);
    ASSERT_TRUE(read_plain.ok()) << read_plain.error().message();
    expect_same_core(*read_plain, a);
    // Restored by ioctls, read through kvm_run.
    const VcpuState b = changed(v->base, salt + 100);
    ASSERT_TRUE(v->plain.restore_state(b).ok());
    auto read_sync = v->syncing.save_state(v->msrs);
    ASSERT_TRUE(read_sync.ok()) << read_sync.error().message();
    expect_same_core(*read_sync, b);
  }
}

TEST(VcpuSyncRegs, AnApNeverStartedStillGetsItsRegisters) {
  SHOAL_REQUIRE_KVM();
  std::optional<TwoViews> v;
  open_views(1, v);  // not the BSP: KVM makes it UNINITIALIZED (wait for INIT and SIPI)
  if (!v) return;
  ASSERT_EQ(v->base.mp_state.mp_state, static_cast<uint32_t>(KVM_MP_STATE_UNINITIALIZED));
  const VcpuState a = changed(v->base, 7);
  ASSERT_TRUE(v->syncing.restore_state(a).ok());
  auto read = v->plain.save_state(v->msrs);
  ASSERT_TRUE(read.ok()) << read.error().message();
  expect_same_core(*read, a);
  EXPECT_EQ(v->syncing.run_state()->kvm_dirty_regs, 0u) << "left marked for a later KVM_RUN";
}

// The debug registers stand for both held parts (XCR0 too, where the CPU has XSAVE): what the
// fd is said to hold already is not set again, anything else is.
TEST(VcpuSyncRegs, ARestoreLeavesOutOnlyWhatTheFdHolds) {
  SHOAL_REQUIRE_KVM();
  std::optional<TwoViews> v;
  open_views(0, v);
  if (!v) return;
  VcpuState s = changed(v->base, 1);
  // In the fd now: DR0 = 0x5000. The state says 0x7000, and so does what the fd is said to
  // hold: the restore believes it and leaves the fd's 0x5000.
  kvm_debugregs in_fd = v->base.debugregs;
  in_fd.db[0] = 0x5000;
  ASSERT_TRUE(v->plain.set_debugregs(in_fd).ok());
  s.debugregs.db[0] = 0x7000;
  VcpuFd::Held held{s.xcrs, s.debugregs};
  ASSERT_TRUE(v->syncing.restore_state(s, &held).ok());
  kvm_debugregs read{};
  ASSERT_TRUE(v->plain.get_debugregs(read).ok());
  EXPECT_EQ(read.db[0], 0x5000u) << "set although the fd held it";
  // What the fd holds differs from the state: set.
  held.debugregs.db[0] = 0x6000;
  ASSERT_TRUE(v->syncing.restore_state(s, &held).ok());
  ASSERT_TRUE(v->plain.get_debugregs(read).ok());
  EXPECT_EQ(read.db[0], 0x7000u) << "left out although the fd held something else";
  auto after = v->plain.save_state(v->msrs);
  ASSERT_TRUE(after.ok());
  expect_same_core(*after, s);
}

}  // namespace
}  // namespace shoal::test

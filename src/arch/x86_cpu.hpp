// x86 boot state of a vCPU: GDT, identity page tables, segment and control registers, CPUID,
// MSRs and the local APIC's virtual-wire setup.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "arch/boot_plan.hpp"
#include "arch/guest_ram.hpp"
#include "kvm/vcpu_fd.hpp"

namespace shoal {

// GDT entry bits from flags (type, S, DPL, P, AVL, L, D/B, G), base and limit.
constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff000000) << 32) | ((uint64_t{flags} & 0xf0ff) << 40) |
         ((uint64_t{limit} & 0x000f0000) << 32) | ((uint64_t{base} & 0x00ffffff) << 16) |
         (uint64_t{limit} & 0x0000ffff);
}
// The hidden segment state KVM wants for a GDT entry.
kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector);

// Writes the boot GDT and IDT, and for a 64-bit entry the identity map of the first 4 GiB.
Status write_boot_tables(GuestRam& ram, const BootPlan& plan);

kvm_sregs boot_sregs(const kvm_sregs& current, EntryMode mode);
kvm_regs boot_regs(const BootPlan& plan);

// What vCPU `id` of `count` sees: KVM's supported set with this vCPU's APIC ID filled in.
// Clearing feature bits here is how a VMM normally hides them, but a nested PVM host reports
// its own features whatever KVM_SET_CPUID2 says (see docs/linux-boot.md).
std::vector<kvm_cpuid_entry2> guest_cpuid(std::vector<kvm_cpuid_entry2> supported, int id,
                                          int count);

// `supported` without the KVM paravirtual features (CPUID 0x40000001 EAX) whose state lives in
// one host's kernel, for a guest whose vCPUs run on several hosts: async page faults, steal
// time and PV EOI (the host kernel writes guest memory, also for the shadows of vCPUs that run
// elsewhere), PV unhalt (a spinlock's kick reaches only vCPUs on the kicking host: a waiter
// halted on another host would never wake) and PV TLB flush (built on steal time). kvmclock
// stays (see the .cc), though each host's KVM writes its own clock into it.
std::vector<kvm_cpuid_entry2> without_host_local_features(std::vector<kvm_cpuid_entry2> supported);

// Whether a guest that saw `saved` (a snapshot's CPUID, perhaps from another host) can go on
// under a KVM that supports `supported`: the feature flags of leaves 1, 7, 0xd, 0x80000001
// and KVM's 0x40000001 must be offered here too, and as many physical address bits. The error
// names the leaf, the register and the missing bits.
Status check_cpuid_features(const std::vector<kvm_cpuid_entry2>& saved,
                            const std::vector<kvm_cpuid_entry2>& supported);

// Full boot-time setup of one vCPU. With `enter_now` false the vCPU is left for the guest's
// INIT/SIPI (a Linux AP); only its CPUID, MSRs and LAPIC are set.
Status configure_vcpu(const VcpuFd& vcpu, const BootPlan& plan,
                      const std::vector<kvm_cpuid_entry2>& cpuid, bool enter_now);

}  // namespace shoal

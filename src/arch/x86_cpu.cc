#include "arch/x86_cpu.hpp"

#include <asm/kvm_para.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "arch/boot_layout.hpp"

namespace shoal {

namespace {

constexpr uint64_t kCr0Pe = 1, kCr0Et = 1 << 4, kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1 << 5;
constexpr uint64_t kEferLme = 1 << 8, kEferLma = 1 << 10;
constexpr uint64_t kPteP = 1, kPteRw = 2, kPtePs = 1 << 7;

constexpr uint32_t kMsrIa32MiscEnable = 0x1a0, kMsrMtrrDefType = 0x2ff;
constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint64_t kMtrrEnableWriteBack = (1 << 11) | 6;

constexpr int kApicLvt0 = 0x350, kApicLvt1 = 0x360;
constexpr uint32_t kDeliveryExtInt = 7, kDeliveryNmi = 4;

// Boot GDT: null, 32-bit code, 64-bit code, data, TSS (selectors in boot_layout.hpp).
constexpr uint64_t boot_gdt[] = {
    0,
    gdt_entry(0xc09b, 0, 0xfffff),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x008b, 0, 0x67),
};

void set_lvt_delivery(kvm_lapic_state& lapic, int reg, uint32_t mode) {
  uint32_t v;
  std::memcpy(&v, lapic.regs + reg, 4);
  v = (v & ~0x700u) | (mode << 8);
  std::memcpy(lapic.regs + reg, &v, 4);
}

}  // namespace

kvm_segment segment_from_gdt(uint64_t e, uint16_t selector) {
  kvm_segment s{};
  s.base = static_cast<uint64_t>(((e >> 16) & 0xffffff) | ((e >> 32) & 0xff000000));
  const uint32_t limit = static_cast<uint32_t>((e & 0xffff) | ((e >> 32) & 0xf0000));
  s.g = (e >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = selector;
  s.type = (e >> 40) & 0xf;
  s.s = (e >> 44) & 1;
  s.dpl = (e >> 45) & 3;
  s.present = (e >> 47) & 1;
  s.avl = (e >> 52) & 1;
  s.l = (e >> 53) & 1;
  s.db = (e >> 54) & 1;
  s.unusable = s.present ? 0 : 1;
  return s;
}

Status write_boot_tables(GuestRam& ram, const BootPlan& plan) {
  SHOAL_TRY(ram.write(boot::kGdtAddr,
                      std::span(reinterpret_cast<const uint8_t*>(boot_gdt), sizeof boot_gdt)),
            "write boot GDT");
  const uint64_t null_idt = 0;
  SHOAL_TRY(ram.write(boot::kIdtAddr, std::span(reinterpret_cast<const uint8_t*>(&null_idt), 8)),
            "write boot IDT");
  if (plan.mode != EntryMode::kLinux64) return {};
  // PML4 -> one PDPT -> four page directories of 2 MiB pages: 0..4 GiB identity-mapped, which
  // covers the kernel, boot_params, command line and initrd wherever they were placed.
  std::vector<uint64_t> tables(6 * 512, 0);
  const uint64_t pdpt = boot::kPml4Addr + kPageSize, pd = pdpt + kPageSize;
  tables[0] = pdpt | kPteP | kPteRw;
  for (uint64_t i = 0; i < 4; ++i) tables[512 + i] = (pd + i * kPageSize) | kPteP | kPteRw;
  for (uint64_t i = 0; i < 4 * 512; ++i) tables[1024 + i] = (i << 21) | kPteP | kPteRw | kPtePs;
  SHOAL_TRY(ram.write(boot::kPml4Addr, std::span(reinterpret_cast<const uint8_t*>(tables.data()),
                                                 tables.size() * 8)),
            "write boot page tables");
  return {};
}

kvm_sregs boot_sregs(const kvm_sregs& current, EntryMode mode) {
  kvm_sregs s = current;
  const uint16_t code_sel =
      mode == EntryMode::kLinux64 ? boot::kCode64Selector : boot::kCode32Selector;
  s.cs = segment_from_gdt(boot_gdt[code_sel / 8], code_sel);
  const kvm_segment data = segment_from_gdt(boot_gdt[boot::kDataSelector / 8], boot::kDataSelector);
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.tr = segment_from_gdt(boot_gdt[boot::kTssSelector / 8], boot::kTssSelector);
  s.gdt.base = boot::kGdtAddr;
  s.gdt.limit = sizeof boot_gdt - 1;
  s.idt.base = boot::kIdtAddr;
  s.idt.limit = 7;
  if (mode == EntryMode::kLinux64) {
    s.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    s.cr3 = boot::kPml4Addr;
    s.cr4 = kCr4Pae;
    s.efer = kEferLme | kEferLma;
  } else {
    // PVH: 32-bit protected mode, paging off.
    s.cr0 = kCr0Pe | kCr0Et;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
  }
  return s;
}

kvm_regs boot_regs(const BootPlan& plan) {
  kvm_regs r{};
  r.rflags = 0x2;  // reserved bit 1; interrupts off
  r.rip = plan.entry;
  if (plan.mode == EntryMode::kLinux64)
    r.rsi = plan.boot_info;
  else
    r.rbx = plan.boot_info;
  return r;
}

std::vector<kvm_cpuid_entry2> guest_cpuid(std::vector<kvm_cpuid_entry2> entries, int id,
                                          int count) {
  const uint32_t apic_id = static_cast<uint32_t>(id);
  for (kvm_cpuid_entry2& e : entries) {
    switch (e.function) {
      case 1:
        // Initial APIC ID and the logical processor count the guest's topology code reads.
        e.ebx = (e.ebx & 0x0000ffff) | (apic_id << 24) |
                (static_cast<uint32_t>(count > 255 ? 255 : count) << 16);
        e.ecx |= 1u << 31;  // running under a hypervisor
        break;
      case 0xb:
      case 0x1f:
        e.edx = apic_id;  // x2APIC ID
        break;
      default:
        break;
    }
  }
  return entries;
}

std::vector<kvm_cpuid_entry2> without_host_local_features(std::vector<kvm_cpuid_entry2> entries) {
  // kvmclock stays for now, though its page is one that both hosts' KVMs write: without it
  // Debian's kernel found no way to calibrate the TSC in the test machine and stopped
  // (docs/interrupts.md, "Measured").
  constexpr uint32_t kHostLocal =
      (1u << KVM_FEATURE_ASYNC_PF) | (1u << KVM_FEATURE_ASYNC_PF_VMEXIT) |
      (1u << KVM_FEATURE_ASYNC_PF_INT) | (1u << KVM_FEATURE_STEAL_TIME) |
      (1u << KVM_FEATURE_PV_EOI) | (1u << KVM_FEATURE_PV_UNHALT) | (1u << KVM_FEATURE_PV_TLB_FLUSH);
  for (kvm_cpuid_entry2& e : entries)
    if (e.function == KVM_CPUID_FEATURES) e.eax &= ~kHostLocal;
  return entries;
}

Status check_cpuid_features(const std::vector<kvm_cpuid_entry2>& saved,
                            const std::vector<kvm_cpuid_entry2>& supported) {
  // Feature flags only: other leaves describe caches, topology or sizes, which differ between
  // hosts without a guest minding. Leaf 1 ECX bits 27 (OSXSAVE, the guest's own CR4) and 31
  // (hypervisor, set by guest_cpuid) are not KVM's to offer.
  struct Features {
    uint32_t function, index;
    const char* reg;
    uint32_t kvm_cpuid_entry2::*field;
    uint32_t ignore;
  };
  static constexpr Features kFeatures[] = {
      {1, 0, "ECX", &kvm_cpuid_entry2::ecx, (1u << 27) | (1u << 31)},
      {1, 0, "EDX", &kvm_cpuid_entry2::edx, 0},
      {7, 0, "EBX", &kvm_cpuid_entry2::ebx, 0},
      {7, 0, "ECX", &kvm_cpuid_entry2::ecx, 0},
      {7, 0, "EDX", &kvm_cpuid_entry2::edx, 0},
      {7, 1, "EAX", &kvm_cpuid_entry2::eax, 0},
      {0xd, 0, "EAX", &kvm_cpuid_entry2::eax, 0},
      {0xd, 1, "EAX", &kvm_cpuid_entry2::eax, 0},
      {0x80000001, 0, "ECX", &kvm_cpuid_entry2::ecx, 0},
      {0x80000001, 0, "EDX", &kvm_cpuid_entry2::edx, 0},
      {0x40000001, 0, "EAX", &kvm_cpuid_entry2::eax, 0},  // KVM's paravirtual features
  };
  auto find = [](const std::vector<kvm_cpuid_entry2>& t, uint32_t f,
                 uint32_t i) -> const kvm_cpuid_entry2* {
    for (const kvm_cpuid_entry2& e : t)
      if (e.function == f && (e.index == i || (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) == 0))
        return &e;
    return nullptr;
  };
  std::string missing;
  for (const Features& f : kFeatures) {
    const kvm_cpuid_entry2* was = find(saved, f.function, f.index);
    if (was == nullptr) continue;
    const kvm_cpuid_entry2* here = find(supported, f.function, f.index);
    const uint32_t offered = here != nullptr ? here->*f.field : 0;
    const uint32_t lacking = (was->*f.field) & ~offered & ~f.ignore;
    if (lacking == 0) continue;
    char part[64];
    std::snprintf(part, sizeof part, "%sCPUID.0x%x.%u:%s bits 0x%08x", missing.empty() ? "" : ", ",
                  f.function, f.index, f.reg, lacking);
    missing += part;
  }
  // The physical address width: the guest may have placed things up to its top.
  const kvm_cpuid_entry2* was = find(saved, 0x80000008, 0);
  const kvm_cpuid_entry2* here = find(supported, 0x80000008, 0);
  if (was != nullptr && here != nullptr && (was->eax & 0xff) > (here->eax & 0xff)) {
    char part[96];
    std::snprintf(part, sizeof part, "%s%u physical address bits, this host has %u",
                  missing.empty() ? "" : ", ", was->eax & 0xff, here->eax & 0xff);
    missing += part;
  }
  if (!missing.empty())
    return Error("this host's KVM lacks CPU features the guest saw: " + missing);
  return {};
}

Status configure_vcpu(const VcpuFd& vcpu, const BootPlan& plan,
                      const std::vector<kvm_cpuid_entry2>& cpuid, bool enter_now) {
  const std::string who = "vcpu " + std::to_string(vcpu.id());
  SHOAL_TRY(vcpu.set_cpuid(cpuid), who);
  SHOAL_TRY(vcpu.set_msrs({{kMsrIa32MiscEnable, 0, kMiscEnableFastString},
                           {kMsrMtrrDefType, 0, kMtrrEnableWriteBack}}),
            who);
  kvm_lapic_state lapic{};
  SHOAL_TRY(vcpu.get_lapic(lapic), who);
  set_lvt_delivery(lapic, kApicLvt0, kDeliveryExtInt);
  set_lvt_delivery(lapic, kApicLvt1, kDeliveryNmi);
  SHOAL_TRY(vcpu.set_lapic(lapic), who);
  if (!enter_now) return {};
  kvm_sregs sregs{};
  SHOAL_TRY(vcpu.get_sregs(sregs), who);
  SHOAL_TRY(vcpu.set_sregs(boot_sregs(sregs, plan.mode)), who);
  SHOAL_TRY(vcpu.set_regs(boot_regs(plan)), who);
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  SHOAL_TRY(vcpu.set_fpu(fpu), who);
  // An AP would otherwise wait for INIT/SIPI.
  SHOAL_TRY(vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE), who);
  return {};
}

}  // namespace shoal

// The interrupt sink: a few hundred bytes of 32-bit code that a pod member runs on the vCPU fds
// of the vCPUs it does not run (docs/interrupts.md). KVM's in-kernel LAPIC delivers an IPI, or
// an IOAPIC or MSI interrupt, only to a vCPU of the same VM; when the target vCPU runs on
// another host, the interrupt lands in this host's copy of it instead, a "shadow" vCPU parked
// in `sti; hlt`. The sink's IDT sends every vector to a stub that reports it with one write to
// kSinkReportGpa + vector (no slot there: KVM_EXIT_MMIO, and the VMM forwards the vector to the
// host that runs the vCPU), then resets the stack, EOIs what is in service and halts again. No
// IRET: the nested PVM host's emulator has none outside real mode, so the VMM unmasks NMIs itself
// after reporting one.
//
// It lives in a KVM slot of its own at kSinkGpa, inside the MMIO hole where no RAM, ACPI table
// or device is described: the guest has no reason to touch it, and each host's copy is private.
// Layout: a GDT at +0, the IDT (256 32-bit interrupt gates) at +0x100, the code at +0x1000
// (start-up, then one 16-byte stub per vector from +0x1100), a 256-byte stack per vCPU id
// from +0x3000.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "kvm/kvm.hpp"

namespace shoal {

inline constexpr uint64_t kSinkGpa = 0xFE00'0000;
inline constexpr uint64_t kSinkBytes = 0x2'0000;
inline constexpr uint64_t kSinkReportGpa = kSinkGpa + kSinkBytes;  // 256 bytes, not RAM
inline constexpr uint64_t kSinkStubsGpa = kSinkGpa + 0x1100;  // stub[v] at + v * kSinkStubBytes
inline constexpr uint64_t kSinkStubBytes = 16;
inline constexpr uint8_t kNmiVector = 2;  // the NMI stub reports 2 (no fixed vector < 16)
inline constexpr uint8_t kSpuriousVector = 0xff;
inline constexpr int kSinkMaxVcpus = 256;

// How a vector the sink took goes to its vCPU again: kNmiVector stands for the NMI.
inline constexpr ApicDelivery sink_delivery(uint8_t vector) {
  return vector == kNmiVector ? ApicDelivery::kNmi : ApicDelivery::kFixed;
}

// The sink's bytes, to be mapped at kSinkGpa.
std::vector<uint8_t> build_interrupt_sink();

// Registers that start vCPU `id` in the sink (from `current`, whose APIC base is kept but
// forced to xAPIC mode: the sink reaches its LAPIC by MMIO).
kvm_sregs sink_sregs(const kvm_sregs& current);
kvm_regs sink_regs(int id);

// What the sink's start-up does to the LAPIC (by MMIO, on the vCPU itself, so nothing that
// arrives meanwhile is lost): TPR 0, software-enabled with spurious vector 0xff, the timer,
// thermal, performance and error LVTs masked, the timer stopped, then EOIs until no vector is
// in service (the vCPU that left took those along). LINT0/LINT1 stay as the guest set them.
// In sink mode every exit is a 1-byte MMIO write to kSinkReportGpa + the vector taken.

// Vectors pending in a saved LAPIC (its IRR), lowest first.
std::vector<uint8_t> pending_vectors(const kvm_lapic_state& lapic);
void clear_pending_vectors(kvm_lapic_state& lapic);

}  // namespace shoal

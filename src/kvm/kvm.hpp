// Owners of the /dev/kvm system fd and of one VM fd.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvm/vcpu_fd.hpp"
#include "kvm/vcpu_state.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

// The APIC delivery modes shoal sends between hosts (the ICR's and the MSI data's bits 8-10).
enum class ApicDelivery : uint8_t { kFixed = 0, kNmi = 4, kInit = 5, kStartup = 6 };

class Kvm {
 public:
  // Opens `path`, checks the API version and every capability shoal relies on.
  static Result<Kvm> open(const std::string& path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  int max_vcpus() const { return max_vcpus_; }
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }
  // KVM_GET_SUPPORTED_CPUID, read once at open: what this host's KVM can present to a guest.
  const std::vector<kvm_cpuid_entry2>& supported_cpuid() const { return cpuid_; }
  // Guest physical address bits KVM offers (CPUID 0x80000008 EAX[7:0]).
  unsigned guest_phys_bits() const;
  // KVM_CHECK_EXTENSION's answer (0 = absent).
  int check_extension(long cap) const;
  // KVM_GET_MSR_INDEX_LIST: the MSRs a vCPU's saved state includes.
  Result<std::vector<uint32_t>> msr_index_list() const;

 private:
  UniqueFd fd_;
  int max_vcpus_ = 0;
  size_t vcpu_mmap_size_ = 0;
  std::vector<kvm_cpuid_entry2> cpuid_;
};

class Vm {
 public:
  static Result<Vm> create(const Kvm& kvm);

  int fd() const { return fd_.get(); }
  // x86 board basics: TSS/identity-map pages below 4 GiB, in-kernel PIC+IOAPIC+LAPIC and PIT.
  Status create_platform();
  Status set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host);
  // KVM_REINJECT_CONTROL off: the in-kernel PIT drops ticks a guest missed instead of
  // replaying them (Linux uses the PIT only to calibrate; its clocks are the TSC and LAPIC).
  // Slow (two non-expedited SRCU grace periods on the VM's irq_srcu, 12-15 ms here), so call it
  // off the start-up path; done once, it spares the VM's destruction the same wait.
  Status disable_pit_reinjection();
  // Drives a GSI (in-kernel irqchip); an ISA edge interrupt is a raise then a lower.
  Status set_irq_line(uint32_t gsi, bool level);
  // KVM_IRQFD: each write to `eventfd` raises `gsi` as an edge, in the kernel, without a
  // VMM thread in the way; `assign` false undoes it.
  Status set_irqfd(int eventfd, uint32_t gsi, bool assign);
  // KVM_IOEVENTFD: a guest write of `len` bytes to MMIO `addr` (with `datamatch`, only one of
  // that value) signals `eventfd` in the kernel instead of exiting to the VMM: ~6 us here
  // against ~40 us for an exit to userspace. Registering changes KVM's I/O bus (an SRCU grace
  // period): do it before the vCPUs run.
  Status set_ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch, bool assign);
  // Sends an interrupt to the LAPIC whose APIC ID is `apic_id` as an MSI would: a fixed
  // `vector`, an NMI, an INIT or a start-up IPI (SIPI) with `vector` (the page of its
  // real-mode entry). KVM takes the delivery mode from the MSI data unfiltered (6.x,
  // kvm_set_msi_irq), so INIT and SIPI travel the same way. True if a LAPIC took it.
  Result<bool> signal_msi(uint32_t apic_id, uint8_t vector, ApicDelivery mode);
  // KVM_CAP_NR_MEMSLOTS: slot ids are below this.
  int memslot_count() const;
  Result<VcpuFd> create_vcpu(int id, size_t mmap_size);
  // The in-kernel PIC, IOAPIC, PIT and kvmclock. Save with every vCPU paused; restore into a
  // VM whose platform exists (create_platform) before its vCPUs run.
  Result<VmState> save_state() const;
  Status restore_state(const VmState& state) const;

 private:
  UniqueFd fd_;
};

}  // namespace shoal

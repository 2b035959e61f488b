// Owns one vCPU: its fd and the kvm_run page shared with the kernel. Move-only.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <vector>

#include "kvm/vcpu_state.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class VcpuFd {
 public:
  // sync_regs: the KVM_SYNC_X86_* fields this KVM exchanges through kvm_run
  // (KVM_CAP_SYNC_REGS), 0 for none.
  static Result<VcpuFd> adopt(int id, UniqueFd fd, size_t mmap_size, uint32_t sync_regs = 0);
  VcpuFd(VcpuFd&& o) noexcept;
  VcpuFd& operator=(VcpuFd&& o) noexcept;
  VcpuFd(const VcpuFd&) = delete;
  VcpuFd& operator=(const VcpuFd&) = delete;
  ~VcpuFd();

  int id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run_state() const { return run_; }

  // One KVM_RUN. Returns 0 or -errno (EINTR when kicked). No allocation: the vCPU hot path.
  int run() const;

  // True if this KVM exchanges all of `fields` (KVM_SYNC_X86_*) through kvm_run.
  bool syncs(uint32_t fields) const { return (sync_regs_ & fields) == fields; }
  // One KVM_RUN that enters no guest (immediate_exit): KVM first loads the fields marked in
  // kvm_run's kvm_dirty_regs and clears their marks (not for an AP never started: it leaves
  // them marked), and on its way out stores `store` into kvm_run. Each state ioctl costs
  // ~10 us on this machine's nested KVM, and this one stands for up to three of them. Also
  // completes a pending I/O exit, as any KVM_RUN does.
  Status sync_run(uint32_t store) const;
  // The registers and events, and the special registers if `sregs` is given: through one
  // sync_run where KVM offers all of them, else by their ioctls.
  Status get_core(kvm_regs& regs, kvm_vcpu_events& events, kvm_sregs* sregs = nullptr) const;
  Status get_regs(kvm_regs& regs) const;
  Status set_regs(const kvm_regs& regs) const;
  Status get_sregs(kvm_sregs& sregs) const;
  Status set_sregs(const kvm_sregs& sregs) const;
  Status set_fpu(const kvm_fpu& fpu) const;
  Status set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) const;
  Status set_msrs(const std::vector<kvm_msr_entry>& msrs) const;
  Status get_lapic(kvm_lapic_state& lapic) const;
  Status set_lapic(const kvm_lapic_state& lapic) const;
  Status set_mp_state(uint32_t state) const;
  Status get_mp_state(kvm_mp_state& mp) const;
  Status get_xsave(std::array<uint32_t, 1024>& region) const;
  Status set_xsave(const std::array<uint32_t, 1024>& region) const;
  Status get_xcrs(kvm_xcrs& xcrs) const;
  Status set_xcrs(const kvm_xcrs& xcrs) const;
  Status get_debugregs(kvm_debugregs& regs) const;
  Status set_debugregs(const kvm_debugregs& regs) const;
  Status get_vcpu_events(kvm_vcpu_events& events) const;
  Status set_vcpu_events(const kvm_vcpu_events& events) const;
  // Reads the MSRs in `indices`; one KVM refuses to read is left out of the result (KVM lists
  // some that only exist with features this vCPU's CPUID does not have).
  Result<std::vector<kvm_msr_entry>> get_msrs(const std::vector<uint32_t>& indices) const;

  // The whole vCPU (see VcpuState), with the MSRs in `msr_indices` (Kvm::msr_index_list).
  // Only between KVM_RUNs, and never right after an I/O exit that KVM has not completed yet
  // (the vCPU thread re-enters KVM_RUN with immediate_exit set first, see vcpu_thread.cc).
  Result<VcpuState> save_state(const std::vector<uint32_t>& msr_indices) const;
  // What this fd still holds because it saved them and ran no guest code since (a shadow
  // taking its vCPU back): restore_state leaves out the ioctls for those `state` has the same.
  // XCR0 and the debug registers seldom change; each ioctl costs ~10 us on nested KVM.
  struct Held {
    kvm_xcrs xcrs;
    kvm_debugregs debugregs;
  };
  // Into a vCPU whose CPUID is set already (configure_vcpu without entering).
  Status restore_state(const VcpuState& state, const Held* held = nullptr) const;

 private:
  VcpuFd() = default;
  void release();

  int id_ = -1;
  UniqueFd fd_;
  kvm_run* run_ = nullptr;
  size_t mmap_size_ = 0;
  uint32_t sync_regs_ = 0;
};

}  // namespace shoal

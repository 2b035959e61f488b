// Owns one vCPU: its fd and the kvm_run page shared with the kernel. Move-only.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <vector>

#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class VcpuFd {
 public:
  static Result<VcpuFd> adopt(int id, UniqueFd fd, size_t mmap_size);
  VcpuFd(VcpuFd&& o) noexcept;
  VcpuFd& operator=(VcpuFd&& o) noexcept;
  VcpuFd(const VcpuFd&) = delete;
  VcpuFd& operator=(const VcpuFd&) = delete;
  ~VcpuFd();

  int id() const { return id_; }
  kvm_run* run_state() const { return run_; }

  // One KVM_RUN. Returns 0 or -errno (EINTR when kicked). No allocation: the vCPU hot path.
  int run() const;

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

 private:
  VcpuFd() = default;
  void release();

  int id_ = -1;
  UniqueFd fd_;
  kvm_run* run_ = nullptr;
  size_t mmap_size_ = 0;
};

}  // namespace shoal

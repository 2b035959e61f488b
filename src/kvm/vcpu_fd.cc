#include "kvm/vcpu_fd.hpp"

#include "kvm/kvm_abi.hpp"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>

namespace shoal {

namespace {
Status ioctl_status(int fd, unsigned long request, const void* arg, const char* name) {
  if (ioctl(fd, request, arg) < 0) return errno_error(name);
  return {};
}
}  // namespace

Result<VcpuFd> VcpuFd::adopt(int id, UniqueFd fd, size_t mmap_size, uint32_t sync_regs) {
  void* run = mmap(nullptr, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (run == MAP_FAILED) return errno_error("mmap kvm_run of vcpu " + std::to_string(id));
  VcpuFd vcpu;
  vcpu.id_ = id;
  vcpu.fd_ = std::move(fd);
  vcpu.run_ = static_cast<kvm_run*>(run);
  vcpu.mmap_size_ = mmap_size;
  vcpu.sync_regs_ = sync_regs;
  return vcpu;
}

VcpuFd::VcpuFd(VcpuFd&& o) noexcept
    : id_(o.id_),
      fd_(std::move(o.fd_)),
      run_(std::exchange(o.run_, nullptr)),
      mmap_size_(o.mmap_size_),
      sync_regs_(o.sync_regs_) {}

VcpuFd& VcpuFd::operator=(VcpuFd&& o) noexcept {
  if (this != &o) {
    release();
    id_ = o.id_;
    fd_ = std::move(o.fd_);
    run_ = std::exchange(o.run_, nullptr);
    mmap_size_ = o.mmap_size_;
    sync_regs_ = o.sync_regs_;
  }
  return *this;
}

VcpuFd::~VcpuFd() {
  release();
}

void VcpuFd::release() {
  if (run_ != nullptr) munmap(run_, mmap_size_);
  run_ = nullptr;
  fd_.reset();
}

int VcpuFd::run() const {
  return ioctl(fd_.get(), KVM_RUN, 0) < 0 ? -errno : 0;
}

Status VcpuFd::sync_run(uint32_t store) const {
  // immediate_exit is the vCPU thread's kick flag as well: one set by a kick meanwhile is
  // cleared here, but that kick's command is queued already and the thread reads its commands
  // before it enters KVM_RUN again (vcpu_thread.cc, loop()).
  run_->kvm_valid_regs = store;
  __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  const int rc = ioctl(fd_.get(), KVM_RUN, 0) < 0 ? errno : 0;
  __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_SEQ_CST);
  run_->kvm_valid_regs = 0;
  // EINTR is the immediate exit's answer; anything else (EINVAL: a field KVM refused) failed.
  if (rc != EINTR) {
    run_->kvm_dirty_regs = 0;
    return Error(std::string("KVM_RUN (sync regs): ") +
                 (rc == 0 ? "entered the guest" : std::strerror(rc)));
  }
  return {};
}

Status VcpuFd::get_core(kvm_regs& regs, kvm_vcpu_events& events, kvm_sregs* sregs) const {
  const uint32_t fields =
      KVM_SYNC_X86_REGS | KVM_SYNC_X86_EVENTS | (sregs != nullptr ? KVM_SYNC_X86_SREGS : 0u);
  if (syncs(fields)) {
    SHOAL_TRY(sync_run(fields), "");
    regs = run_->s.regs.regs;
    events = run_->s.regs.events;
    if (sregs != nullptr) *sregs = run_->s.regs.sregs;
    return {};
  }
  SHOAL_TRY(get_regs(regs), "");
  SHOAL_TRY(get_vcpu_events(events), "");
  if (sregs != nullptr) SHOAL_TRY(get_sregs(*sregs), "");
  return {};
}

Status VcpuFd::get_regs(kvm_regs& regs) const {
  return ioctl_status(fd_.get(), KVM_GET_REGS, &regs, "KVM_GET_REGS");
}
Status VcpuFd::set_regs(const kvm_regs& regs) const {
  return ioctl_status(fd_.get(), KVM_SET_REGS, &regs, "KVM_SET_REGS");
}
Status VcpuFd::get_sregs(kvm_sregs& sregs) const {
  return ioctl_status(fd_.get(), KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
}
Status VcpuFd::set_sregs(const kvm_sregs& sregs) const {
  return ioctl_status(fd_.get(), KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
}
Status VcpuFd::set_fpu(const kvm_fpu& fpu) const {
  return ioctl_status(fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}
Status VcpuFd::get_lapic(kvm_lapic_state& lapic) const {
  return ioctl_status(fd_.get(), KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
}
Status VcpuFd::set_lapic(const kvm_lapic_state& lapic) const {
  return ioctl_status(fd_.get(), KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
}
Status VcpuFd::set_mp_state(uint32_t state) const {
  kvm_mp_state mp{state};
  return ioctl_status(fd_.get(), KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
}

Status VcpuFd::get_mp_state(kvm_mp_state& mp) const {
  return ioctl_status(fd_.get(), KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
}
Status VcpuFd::get_xsave(std::array<uint32_t, 1024>& region) const {
  static_assert(sizeof(region) == sizeof(kvm_abi::Xsave));
  return ioctl_status(fd_.get(), kvm_abi::kGetXsave, region.data(), "KVM_GET_XSAVE");
}
Status VcpuFd::set_xsave(const std::array<uint32_t, 1024>& region) const {
  return ioctl_status(fd_.get(), kvm_abi::kSetXsave, region.data(), "KVM_SET_XSAVE");
}
Status VcpuFd::get_xcrs(kvm_xcrs& xcrs) const {
  return ioctl_status(fd_.get(), KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS");
}
Status VcpuFd::set_xcrs(const kvm_xcrs& xcrs) const {
  return ioctl_status(fd_.get(), KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
}
Status VcpuFd::get_debugregs(kvm_debugregs& regs) const {
  return ioctl_status(fd_.get(), KVM_GET_DEBUGREGS, &regs, "KVM_GET_DEBUGREGS");
}
Status VcpuFd::set_debugregs(const kvm_debugregs& regs) const {
  return ioctl_status(fd_.get(), KVM_SET_DEBUGREGS, &regs, "KVM_SET_DEBUGREGS");
}
Status VcpuFd::get_vcpu_events(kvm_vcpu_events& events) const {
  return ioctl_status(fd_.get(), KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS");
}
Status VcpuFd::set_vcpu_events(const kvm_vcpu_events& events) const {
  return ioctl_status(fd_.get(), KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
}

Result<std::vector<kvm_msr_entry>> VcpuFd::get_msrs(const std::vector<uint32_t>& indices) const {
  std::vector<kvm_msr_entry> out;
  std::vector<uint8_t> buf(sizeof(kvm_abi::MsrsHeader) + indices.size() * sizeof(kvm_msr_entry));
  size_t from = 0;
  while (from < indices.size()) {
    const size_t n = indices.size() - from;
    auto* header = reinterpret_cast<kvm_abi::MsrsHeader*>(buf.data());
    header->nmsrs = static_cast<uint32_t>(n);
    auto* entries = reinterpret_cast<kvm_msr_entry*>(buf.data() + sizeof(kvm_abi::MsrsHeader));
    for (size_t i = 0; i < n; ++i) entries[i] = kvm_msr_entry{indices[from + i], 0, 0};
    const int got = ioctl(fd_.get(), kvm_abi::kGetMsrs, buf.data());
    if (got < 0) return errno_error("KVM_GET_MSRS");
    // KVM_GET_MSRS reads in order and stops at the first MSR it refuses: keep what it read,
    // skip that one, go on.
    out.insert(out.end(), entries, entries + got);
    from += static_cast<size_t>(got) + 1;
  }
  return out;
}

Status VcpuFd::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) const {
  std::vector<uint8_t> buf(sizeof(kvm_abi::CpuidHeader) +
                           entries.size() * sizeof(kvm_cpuid_entry2));
  reinterpret_cast<kvm_abi::CpuidHeader*>(buf.data())->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.data() + sizeof(kvm_abi::CpuidHeader), entries.data(),
              entries.size() * sizeof(kvm_cpuid_entry2));
  return ioctl_status(fd_.get(), kvm_abi::kSetCpuid2, buf.data(), "KVM_SET_CPUID2");
}

Status VcpuFd::set_msrs(const std::vector<kvm_msr_entry>& msrs) const {
  std::vector<uint8_t> buf(sizeof(kvm_abi::MsrsHeader) + msrs.size() * sizeof(kvm_msr_entry));
  reinterpret_cast<kvm_abi::MsrsHeader*>(buf.data())->nmsrs = static_cast<uint32_t>(msrs.size());
  std::memcpy(buf.data() + sizeof(kvm_abi::MsrsHeader), msrs.data(),
              msrs.size() * sizeof(kvm_msr_entry));
  const int set = ioctl(fd_.get(), kvm_abi::kSetMsrs, buf.data());
  if (set < 0) return errno_error("KVM_SET_MSRS");
  // KVM_SET_MSRS returns how many it set; it stops at the first one it refuses.
  if (static_cast<size_t>(set) != msrs.size())
    return Error("KVM_SET_MSRS: MSR " + std::to_string(msrs[set].index) + " refused");
  return {};
}

// Saving reads in any order (the vCPU is not running). The restore's order is what KVM needs:
// mp_state first; sregs before the LAPIC (the APIC base MSR lives in sregs); MSRs after sregs
// (EFER) and before the events (a pending exception may depend on them).
Result<VcpuState> VcpuFd::save_state(const std::vector<uint32_t>& msr_indices) const {
  VcpuState s;
  s.id = static_cast<uint32_t>(id_);
  SHOAL_TRY(get_mp_state(s.mp_state), "");
  SHOAL_TRY(get_core(s.regs, s.events, &s.sregs), "");
  SHOAL_TRY(get_xsave(s.xsave), "");
  SHOAL_TRY(get_xcrs(s.xcrs), "");
  SHOAL_TRY(get_debugregs(s.debugregs), "");
  SHOAL_TRY(get_lapic(s.lapic), "");
  auto msrs = get_msrs(msr_indices);
  if (!msrs) return msrs.error();
  if (msrs->size() > kMaxStateMsrs) msrs->resize(kMaxStateMsrs);
  s.msrs = std::move(*msrs);
  return s;
}

Status VcpuFd::restore_state(const VcpuState& s, const Held* held) const {
  // The registers and the events go last through kvm_run where KVM can (one KVM_RUN for two
  // ioctls); the special registers stay in front: their APIC base decides how KVM_SET_LAPIC
  // reads the LAPIC (xAPIC or x2APIC IDs).
  constexpr uint32_t kLast = KVM_SYNC_X86_REGS | KVM_SYNC_X86_EVENTS;
  const bool sync = syncs(kLast);
  SHOAL_TRY(set_mp_state(s.mp_state.mp_state), "");
  if (!sync) SHOAL_TRY(set_regs(s.regs), "");
  SHOAL_TRY(set_sregs(s.sregs), "");
  SHOAL_TRY(set_xsave(s.xsave), "");
  // A host CPU without XSAVE (QEMU's qemu64 model, older hardware): KVM_GET_XCRS reports zero
  // registers, and KVM_SET_XCRS fails with EINVAL whatever it is given.
  const bool same_xcrs = held && std::memcmp(&held->xcrs, &s.xcrs, sizeof s.xcrs) == 0;
  if (s.xcrs.nr_xcrs > 0 && !same_xcrs) SHOAL_TRY(set_xcrs(s.xcrs), "");
  if (!held || std::memcmp(&held->debugregs, &s.debugregs, sizeof s.debugregs) != 0)
    SHOAL_TRY(set_debugregs(s.debugregs), "");
  SHOAL_TRY(set_lapic(s.lapic), "");
  SHOAL_TRY(set_msrs(s.msrs), "");
  if (sync) {
    run_->s.regs.regs = s.regs;
    run_->s.regs.events = s.events;
    run_->kvm_dirty_regs = kLast;
    SHOAL_TRY(sync_run(0), "");
    // An AP not started yet (UNINITIALIZED) leaves KVM_RUN before it loads anything.
    if (run_->kvm_dirty_regs == 0) return {};
    run_->kvm_dirty_regs = 0;
    SHOAL_TRY(set_regs(s.regs), "");
  }
  SHOAL_TRY(set_vcpu_events(s.events), "");
  return {};
}

}  // namespace shoal

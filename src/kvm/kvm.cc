#include "kvm/kvm.hpp"

#include "kvm/kvm_abi.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace shoal {

namespace {

struct RequiredCap {
  long cap;
  const char* name;
};

constexpr RequiredCap kRequiredCaps[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
    {KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI"},
};

// Just below the IOAPIC/LAPIC pages, inside the MMIO hole, as QEMU and Firecracker do.
constexpr uint64_t kTssAddress = 0xfffbd000;
constexpr uint64_t kIdentityMapAddress = 0xfffbc000;

Result<std::vector<kvm_cpuid_entry2>> read_supported_cpuid(int kvm_fd);

}  // namespace

Result<Kvm> Kvm::open(const std::string& path) {
  Kvm kvm;
  kvm.fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!kvm.fd_.valid()) {
    const int err = errno;
    std::string hint;
    if (err == EACCES)
      hint = " (run as root or add the user to the 'kvm' group)";
    else if (err == ENOENT)
      hint = " (load kvm_intel or kvm_amd, or enable virtualization in the firmware)";
    return Error(path + ": " + std::strerror(err) + hint);
  }
  const int version = ioctl(kvm.fd(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    return Error(path + ": KVM API version " + std::to_string(version) + ", shoal needs " +
                 std::to_string(KVM_API_VERSION));
  for (const auto& c : kRequiredCaps)
    if (kvm.check_extension(c.cap) <= 0) return Error(path + ": missing capability " + c.name);
  kvm.max_vcpus_ = kvm.check_extension(KVM_CAP_MAX_VCPUS);
  if (kvm.max_vcpus_ <= 0) kvm.max_vcpus_ = kvm.check_extension(KVM_CAP_NR_VCPUS);
  if (kvm.max_vcpus_ <= 0) kvm.max_vcpus_ = 4;  // the documented minimum
  const int mmap_size = ioctl(kvm.fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size <= 0) return errno_error(path + ": KVM_GET_VCPU_MMAP_SIZE");
  kvm.vcpu_mmap_size_ = static_cast<size_t>(mmap_size);
  auto cpuid = read_supported_cpuid(kvm.fd());
  if (!cpuid) return cpuid.error().context(path);
  kvm.cpuid_ = std::move(*cpuid);
  return kvm;
}

int Kvm::check_extension(long cap) const {
  return ioctl(fd(), KVM_CHECK_EXTENSION, cap);
}

namespace {
Result<std::vector<kvm_cpuid_entry2>> read_supported_cpuid(int kvm_fd) {
  // The kernel says E2BIG until the buffer is large enough. Each call costs ~0.6 ms on a
  // nested host, so the first try is large enough for every CPU seen so far (~80 entries).
  for (uint32_t n = 256; n <= 4096; n *= 2) {
    std::vector<uint8_t> buf(sizeof(kvm_abi::CpuidHeader) + n * sizeof(kvm_cpuid_entry2));
    auto* header = reinterpret_cast<kvm_abi::CpuidHeader*>(buf.data());
    header->nent = n;
    if (ioctl(kvm_fd, kvm_abi::kGetSupportedCpuid, buf.data()) == 0) {
      std::vector<kvm_cpuid_entry2> entries(header->nent);
      std::memcpy(entries.data(), buf.data() + sizeof(kvm_abi::CpuidHeader),
                  entries.size() * sizeof(kvm_cpuid_entry2));
      return entries;
    }
    if (errno != E2BIG) return errno_error("KVM_GET_SUPPORTED_CPUID");
  }
  return Error("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}
}  // namespace

unsigned Kvm::guest_phys_bits() const {
  for (const auto& e : cpuid_)
    if (e.function == 0x80000008) return e.eax & 0xffu;
  return 36u;  // the architectural default without leaf 0x80000008
}

Result<Vm> Vm::create(const Kvm& kvm) {
  Vm vm;
  vm.fd_ = UniqueFd(ioctl(kvm.fd(), KVM_CREATE_VM, 0));
  if (!vm.fd_.valid()) return errno_error("KVM_CREATE_VM");
  return vm;
}

Status Vm::create_platform() {
  if (ioctl(fd(), KVM_SET_TSS_ADDR, kTssAddress) < 0) return errno_error("KVM_SET_TSS_ADDR");
  uint64_t identity = kIdentityMapAddress;
  if (ioctl(fd(), KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
    return errno_error("KVM_SET_IDENTITY_MAP_ADDR");
  if (ioctl(fd(), KVM_CREATE_IRQCHIP, 0) < 0) return errno_error("KVM_CREATE_IRQCHIP");
  kvm_pit_config pit{};
  // The kernel also answers port 0x61 (PC speaker / PIT gate), which Linux's calibration polls.
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (ioctl(fd(), KVM_CREATE_PIT2, &pit) < 0) return errno_error("KVM_CREATE_PIT2");
  return {};
}

Status Vm::set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (ioctl(fd(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
    return errno_error("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot));
  return {};
}

Status Vm::disable_pit_reinjection() {
  kvm_reinject_control control{};
  control.pit_reinject = 0;
  if (ioctl(fd(), KVM_REINJECT_CONTROL, &control) < 0) return errno_error("KVM_REINJECT_CONTROL");
  return {};
}

Status Vm::set_irq_line(uint32_t gsi, bool level) {
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  if (ioctl(fd(), KVM_IRQ_LINE, &irq) < 0) return errno_error("KVM_IRQ_LINE");
  return {};
}

Status Vm::set_irqfd(int eventfd, uint32_t gsi, bool assign) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  irqfd.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN;
  if (ioctl(fd(), KVM_IRQFD, &irqfd) < 0)
    return errno_error("KVM_IRQFD gsi " + std::to_string(gsi));
  return {};
}

Status Vm::set_ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch,
                         bool assign) {
  kvm_ioeventfd io{};
  io.datamatch = datamatch;
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN);
  if (ioctl(fd(), KVM_IOEVENTFD, &io) < 0) return errno_error("KVM_IOEVENTFD");
  return {};
}

int Vm::memslot_count() const {
  const int n = ioctl(fd(), KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
  return n > 0 ? n : 32;  // KVM's documented minimum
}

Result<bool> Vm::signal_msi(uint32_t apic_id, uint8_t vector, ApicDelivery mode) {
  kvm_msi msi{};
  // Physical destination, edge. An NMI or INIT carries no vector.
  msi.address_lo = 0xfee0'0000u | (apic_id << 12);
  const bool vectored = mode == ApicDelivery::kFixed || mode == ApicDelivery::kStartup;
  msi.data = (static_cast<uint32_t>(mode) << 8) | (vectored ? vector : 0u);
  const int rc = ioctl(fd(), KVM_SIGNAL_MSI, &msi);
  if (rc < 0) return errno_error("KVM_SIGNAL_MSI to APIC " + std::to_string(apic_id));
  return rc > 0;  // 0: no LAPIC took it (none with that ID, or software-disabled)
}

Result<VcpuFd> Vm::create_vcpu(int id, size_t mmap_size) {
  UniqueFd fd(ioctl(this->fd(), KVM_CREATE_VCPU, id));
  if (!fd.valid()) return errno_error("KVM_CREATE_VCPU " + std::to_string(id));
  // Per VM (KVM_CAP_CHECK_EXTENSION_VM): 0 on a KVM without it, as on the system fd.
  const int sync = ioctl(this->fd(), KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
  return VcpuFd::adopt(id, std::move(fd), mmap_size, sync > 0 ? static_cast<uint32_t>(sync) : 0);
}

Result<std::vector<uint32_t>> Kvm::msr_index_list() const {
  kvm_abi::MsrListHeader probe{0};
  // With nmsrs 0 KVM answers E2BIG and writes how many there are.
  if (ioctl(fd(), kvm_abi::kGetMsrIndexList, &probe) == 0) return std::vector<uint32_t>{};
  if (errno != E2BIG) return errno_error("KVM_GET_MSR_INDEX_LIST");
  std::vector<uint32_t> buf(1 + probe.nmsrs);
  buf[0] = probe.nmsrs;
  if (ioctl(fd(), kvm_abi::kGetMsrIndexList, buf.data()) < 0)
    return errno_error("KVM_GET_MSR_INDEX_LIST");
  return std::vector<uint32_t>(buf.begin() + 1, buf.begin() + 1 + buf[0]);
}

Result<VmState> Vm::save_state() const {
  VmState s;
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  for (kvm_irqchip* chip : {&s.pic_master, &s.pic_slave, &s.ioapic})
    if (ioctl(fd(), KVM_GET_IRQCHIP, chip) < 0)
      return errno_error("KVM_GET_IRQCHIP " + std::to_string(chip->chip_id));
  if (ioctl(fd(), KVM_GET_PIT2, &s.pit) < 0) return errno_error("KVM_GET_PIT2");
  if (ioctl(fd(), KVM_GET_CLOCK, &s.clock) < 0) return errno_error("KVM_GET_CLOCK");
  return s;
}

Status Vm::restore_state(const VmState& s) const {
  for (const kvm_irqchip* chip : {&s.pic_master, &s.pic_slave, &s.ioapic})
    if (ioctl(fd(), KVM_SET_IRQCHIP, chip) < 0)
      return errno_error("KVM_SET_IRQCHIP " + std::to_string(chip->chip_id));
  if (ioctl(fd(), KVM_SET_PIT2, &s.pit) < 0) return errno_error("KVM_SET_PIT2");
  // Only the clock value: the flags KVM_GET_CLOCK reports (TSC_STABLE, REALTIME, HOST_TSC)
  // describe the source host; KVM_SET_CLOCK takes none of them without their fields.
  kvm_clock_data clock{};
  clock.clock = s.clock.clock;
  if (ioctl(fd(), KVM_SET_CLOCK, &clock) < 0) return errno_error("KVM_SET_CLOCK");
  return {};
}

}  // namespace shoal

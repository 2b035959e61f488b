#include "kvm/vcpu_state.hpp"

#include <cstring>
#include <string>

#include "shoal/wire_bytes.hpp"

namespace shoal {

namespace {

constexpr uint32_t kVcpuMagic = 0x43564853;  // "SHVC"
constexpr uint32_t kVmMagic = 0x4d564853;    // "SHVM"
// KVM's own limit on x86 (KVM_MAX_VCPU_IDS is 4096 there): a larger id is not a vCPU.
constexpr uint32_t kMaxVcpuId = 4096;

// Each fixed-size part travels as (size, bytes): a reader checks the size against what this
// build's headers say, so a state from a kernel with a different layout is refused, not misread.
template <class T>
void put_part(WireWriter& w, const T& part) {
  w.put<uint32_t>(sizeof(T)).put_bytes(&part, sizeof(T));
}

template <class T>
Status get_part(WireReader& r, T& part, const char* what, const char* kind) {
  uint32_t size = 0;
  if (!r.get(size)) return Error(std::string(kind) + ": " + what + ": truncated");
  if (size != sizeof(T))
    return Error(std::string(kind) + ": " + what + ": " + std::to_string(size) +
                 " bytes, this build expects " + std::to_string(sizeof(T)));
  if (!r.get_bytes(&part, sizeof(T))) return Error(std::string(kind) + ": " + what + ": truncated");
  return {};
}

Status check_header(WireReader& r, size_t bytes, uint32_t magic, uint32_t version, size_t max_bytes,
                    const char* kind) {
  if (bytes > max_bytes)
    return Error(std::string(kind) + ": " + std::to_string(bytes) + " bytes, at most " +
                 std::to_string(max_bytes));
  uint32_t m = 0, v = 0;
  if (!r.get(m) || m != magic) return Error(std::string(kind) + ": not a shoal " + kind);
  if (!r.get(v) || v != version)
    return Error(std::string(kind) + ": version " + std::to_string(v) + ", this build reads " +
                 std::to_string(version));
  return {};
}

}  // namespace

std::vector<uint8_t> encode_vcpu_state(const VcpuState& s) {
  WireWriter w;
  w.put(kVcpuMagic).put(kVcpuStateVersion).put(s.id);
  put_part(w, s.mp_state);
  put_part(w, s.regs);
  put_part(w, s.sregs);
  put_part(w, s.xsave);
  put_part(w, s.xcrs);
  put_part(w, s.debugregs);
  put_part(w, s.lapic);
  put_part(w, s.events);
  w.put<uint32_t>(static_cast<uint32_t>(s.msrs.size()));
  for (const kvm_msr_entry& m : s.msrs) w.put(m.index).put<uint64_t>(m.data);
  return w.take();
}

Result<VcpuState> decode_vcpu_state(const std::vector<uint8_t>& bytes) {
  constexpr const char* kKind = "vcpu state";
  WireReader r(bytes);
  SHOAL_TRY(check_header(r, bytes.size(), kVcpuMagic, kVcpuStateVersion, kMaxVcpuStateBytes, kKind),
            "");
  VcpuState s;
  if (!r.get(s.id)) return Error("vcpu state: id: truncated");
  if (s.id >= kMaxVcpuId) return Error("vcpu state: id " + std::to_string(s.id) + " out of range");
  SHOAL_TRY(get_part(r, s.mp_state, "mp_state", kKind), "");
  if (s.mp_state.mp_state > KVM_MP_STATE_AP_RESET_HOLD)
    return Error("vcpu state: mp_state: " + std::to_string(s.mp_state.mp_state) + " unknown");
  SHOAL_TRY(get_part(r, s.regs, "regs", kKind), "");
  SHOAL_TRY(get_part(r, s.sregs, "sregs", kKind), "");
  SHOAL_TRY(get_part(r, s.xsave, "xsave", kKind), "");
  SHOAL_TRY(get_part(r, s.xcrs, "xcrs", kKind), "");
  if (s.xcrs.nr_xcrs > KVM_MAX_XCRS)
    return Error("vcpu state: xcrs: " + std::to_string(s.xcrs.nr_xcrs) + " registers, at most " +
                 std::to_string(KVM_MAX_XCRS));
  SHOAL_TRY(get_part(r, s.debugregs, "debugregs", kKind), "");
  SHOAL_TRY(get_part(r, s.lapic, "lapic", kKind), "");
  SHOAL_TRY(get_part(r, s.events, "events", kKind), "");
  uint32_t n = 0;
  if (!r.get(n)) return Error("vcpu state: msrs: truncated");
  if (n > kMaxStateMsrs)
    return Error("vcpu state: msrs: " + std::to_string(n) + " entries, at most " +
                 std::to_string(kMaxStateMsrs));
  s.msrs.resize(n);
  for (kvm_msr_entry& m : s.msrs) {
    uint64_t data = 0;
    if (!r.get(m.index) || !r.get(data)) return Error("vcpu state: msrs: truncated");
    m.data = data;
  }
  if (!r.rest().empty()) return Error("vcpu state: trailing bytes");
  return s;
}

std::vector<uint8_t> encode_vm_state(const VmState& s) {
  WireWriter w;
  w.put(kVmMagic).put(kVmStateVersion);
  put_part(w, s.pic_master);
  put_part(w, s.pic_slave);
  put_part(w, s.ioapic);
  put_part(w, s.pit);
  put_part(w, s.clock);
  return w.take();
}

Result<VmState> decode_vm_state(const std::vector<uint8_t>& bytes) {
  constexpr const char* kKind = "vm state";
  WireReader r(bytes);
  SHOAL_TRY(check_header(r, bytes.size(), kVmMagic, kVmStateVersion, kMaxVmStateBytes, kKind), "");
  VmState s;
  SHOAL_TRY(get_part(r, s.pic_master, "pic_master", kKind), "");
  SHOAL_TRY(get_part(r, s.pic_slave, "pic_slave", kKind), "");
  SHOAL_TRY(get_part(r, s.ioapic, "ioapic", kKind), "");
  if (s.pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
      s.pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE || s.ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
    return Error("vm state: irqchip ids do not match their places");
  SHOAL_TRY(get_part(r, s.pit, "pit", kKind), "");
  SHOAL_TRY(get_part(r, s.clock, "clock", kKind), "");
  if (!r.rest().empty()) return Error("vm state: trailing bytes");
  return s;
}

}  // namespace shoal

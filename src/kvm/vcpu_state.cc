#include "kvm/vcpu_state.hpp"

#include <algorithm>
#include <bit>
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

// A part's size field, which must be this build's size of it.
Status get_part_size(WireReader& r, size_t expected, const std::string& field) {
  uint32_t size = 0;
  if (!r.get(size)) return Error(field + "truncated");
  if (size != expected)
    return Error(field + std::to_string(size) + " bytes, this build expects " +
                 std::to_string(expected));
  return {};
}

template <class T>
Status get_part(WireReader& r, T& part, const char* what, const char* kind) {
  const std::string field = std::string(kind) + ": " + what + ": ";
  SHOAL_TRY(get_part_size(r, sizeof(T), field), "");
  if (!r.get_bytes(&part, sizeof(T))) return Error(field + "truncated");
  return {};
}

// A part that is mostly zeros (the XSAVE area holds AVX-512 state most guests never touch, the
// LAPIC page gaps between its registers) travels as (size, a mask of its 64-byte blocks that
// are not all zero, those blocks): 6692 bytes of state became ~2 KB, which a move seals, sends
// and decodes on its critical path.
constexpr size_t kSparseBlock = 64;

bool all_zero(const uint8_t* block) {
  return std::all_of(block, block + kSparseBlock, [](uint8_t x) { return x == 0; });
}

template <class T>
void put_sparse_part(WireWriter& w, const T& part) {
  static_assert(sizeof(T) % kSparseBlock == 0 && sizeof(T) / kSparseBlock <= 64);
  const auto* bytes = reinterpret_cast<const uint8_t*>(&part);
  uint64_t mask = 0;
  for (size_t b = 0; b < sizeof(T) / kSparseBlock; ++b)
    if (!all_zero(bytes + b * kSparseBlock)) mask |= uint64_t{1} << b;
  w.put<uint32_t>(sizeof(T)).put(mask);
  for (size_t b = 0; b < sizeof(T) / kSparseBlock; ++b)
    if (mask & (uint64_t{1} << b)) w.put_bytes(bytes + b * kSparseBlock, kSparseBlock);
}

template <class T>
Status get_sparse_part(WireReader& r, T& part, const char* what, const char* kind) {
  const std::string field = std::string(kind) + ": " + what + ": ";
  SHOAL_TRY(get_part_size(r, sizeof(T), field), "");
  uint64_t mask = 0;
  if (!r.get(mask)) return Error(field + "truncated");
  constexpr size_t kBlocks = sizeof(T) / kSparseBlock;
  if constexpr (kBlocks < 64) {
    if ((mask >> kBlocks) != 0)
      return Error(field + "block mask names block " +
                   std::to_string(std::countr_zero(mask >> kBlocks) + kBlocks) + " of " +
                   std::to_string(kBlocks));
  }
  auto* bytes = reinterpret_cast<uint8_t*>(&part);
  std::memset(bytes, 0, sizeof(T));
  for (size_t b = 0; b < kBlocks; ++b) {
    if (!(mask & (uint64_t{1} << b))) continue;
    uint8_t* block = bytes + b * kSparseBlock;
    if (!r.get_bytes(block, kSparseBlock)) return Error(field + "truncated");
    // One encoding per state: a zero block is never sent.
    if (all_zero(block))
      return Error(field + "block " + std::to_string(b) + " is sent but all zeros");
  }
  return {};
}

// Returns the version read: one of [oldest, newest].
Result<uint32_t> check_header(WireReader& r, size_t bytes, uint32_t magic, uint32_t oldest,
                              uint32_t newest, size_t max_bytes, const char* kind) {
  if (bytes > max_bytes)
    return Error(std::string(kind) + ": " + std::to_string(bytes) + " bytes, at most " +
                 std::to_string(max_bytes));
  uint32_t m = 0, v = 0;
  if (!r.get(m) || m != magic) return Error(std::string(kind) + ": not a shoal " + kind);
  if (!r.get(v) || v < oldest || v > newest)
    return Error(std::string(kind) + ": version " + std::to_string(v) + ", this build reads " +
                 (oldest == newest ? std::to_string(newest)
                                   : std::to_string(oldest) + " to " + std::to_string(newest)));
  return v;
}

}  // namespace

std::vector<uint8_t> encode_vcpu_state(const VcpuState& s) {
  WireWriter w;
  w.put(kVcpuMagic).put(kVcpuStateVersion).put(s.id);
  put_part(w, s.mp_state);
  put_part(w, s.regs);
  put_part(w, s.sregs);
  put_sparse_part(w, s.xsave);
  put_part(w, s.xcrs);
  put_part(w, s.debugregs);
  put_sparse_part(w, s.lapic);
  put_part(w, s.events);
  w.put<uint32_t>(static_cast<uint32_t>(s.msrs.size()));
  for (const kvm_msr_entry& m : s.msrs) w.put(m.index).put<uint64_t>(m.data);
  return w.take();
}

Result<VcpuState> decode_vcpu_state(const std::vector<uint8_t>& bytes) {
  constexpr const char* kKind = "vcpu state";
  WireReader r(bytes);
  // Version 1 (snapshots taken before the sparse parts) had every part whole.
  auto version =
      check_header(r, bytes.size(), kVcpuMagic, 1, kVcpuStateVersion, kMaxVcpuStateBytes, kKind);
  if (!version) return version.error();
  const bool sparse = *version >= 2;
  VcpuState s;
  if (!r.get(s.id)) return Error("vcpu state: id: truncated");
  if (s.id >= kMaxVcpuId) return Error("vcpu state: id " + std::to_string(s.id) + " out of range");
  SHOAL_TRY(get_part(r, s.mp_state, "mp_state", kKind), "");
  if (s.mp_state.mp_state > KVM_MP_STATE_AP_RESET_HOLD)
    return Error("vcpu state: mp_state: " + std::to_string(s.mp_state.mp_state) + " unknown");
  SHOAL_TRY(get_part(r, s.regs, "regs", kKind), "");
  SHOAL_TRY(get_part(r, s.sregs, "sregs", kKind), "");
  SHOAL_TRY(
      sparse ? get_sparse_part(r, s.xsave, "xsave", kKind) : get_part(r, s.xsave, "xsave", kKind),
      "");
  SHOAL_TRY(get_part(r, s.xcrs, "xcrs", kKind), "");
  if (s.xcrs.nr_xcrs > KVM_MAX_XCRS)
    return Error("vcpu state: xcrs: " + std::to_string(s.xcrs.nr_xcrs) + " registers, at most " +
                 std::to_string(KVM_MAX_XCRS));
  SHOAL_TRY(get_part(r, s.debugregs, "debugregs", kKind), "");
  SHOAL_TRY(
      sparse ? get_sparse_part(r, s.lapic, "lapic", kKind) : get_part(r, s.lapic, "lapic", kKind),
      "");
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
  if (auto v = check_header(r, bytes.size(), kVmMagic, kVmStateVersion, kVmStateVersion,
                            kMaxVmStateBytes, kKind);
      !v)
    return v.error();
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

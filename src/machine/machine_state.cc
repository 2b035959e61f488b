#include "machine/machine_state.hpp"

#include <string>

#include "shoal/wire_bytes.hpp"

namespace shoal {

namespace {

constexpr uint32_t kMagic = 0x4d534853;  // "SHSM"

Result<std::vector<uint8_t>> get_blob(WireReader& r, size_t max, const std::string& what) {
  std::vector<uint8_t> b;
  std::string why;
  if (!r.get_blob(b, max, why)) return Error("machine state: " + what + ": " + why);
  return b;
}

}  // namespace

std::vector<uint8_t> encode_machine_state(const MachineState& s) {
  WireWriter w;
  w.put(kMagic).put(kMachineStateVersion);
  w.put_blob(encode_vm_state(s.vm));
  w.put(static_cast<uint32_t>(s.vcpus.size()));
  for (const VcpuState& v : s.vcpus) w.put_blob(encode_vcpu_state(v));
  w.put_blob(s.port_devices);
  w.put(static_cast<uint32_t>(s.cpuid.size()));
  for (const kvm_cpuid_entry2& e : s.cpuid)
    w.put(e.function).put(e.index).put(e.flags).put(e.eax).put(e.ebx).put(e.ecx).put(e.edx);
  return w.take();
}

Result<MachineState> decode_machine_state(const std::vector<uint8_t>& bytes) {
  WireReader r(bytes);
  uint32_t magic = 0, version = 0, vcpus = 0;
  if (!r.get(magic) || magic != kMagic) return Error("machine state: not a shoal machine state");
  // Version 1 is version 2 without the CPUID table.
  if (!r.get(version) || version < 1 || version > kMachineStateVersion)
    return Error("machine state: version " + std::to_string(version) + ", this build reads 1.." +
                 std::to_string(kMachineStateVersion));
  MachineState s;
  auto vm = get_blob(r, kMaxVmStateBytes, "vm");
  if (!vm) return vm.error();
  auto vm_state = decode_vm_state(*vm);
  if (!vm_state) return vm_state.error().context("machine state");
  s.vm = *vm_state;
  if (!r.get(vcpus)) return Error("machine state: vcpus: truncated");
  // None is possible: a pod member may run no vCPU (a single host's restore checks the count
  // against the snapshot's header).
  if (vcpus > kMaxMachineVcpus)
    return Error("machine state: vcpus: " + std::to_string(vcpus) + ", at most " +
                 std::to_string(kMaxMachineVcpus));
  for (uint32_t i = 0; i < vcpus; ++i) {
    const std::string what = "vcpu " + std::to_string(i);
    auto blob = get_blob(r, kMaxVcpuStateBytes, what);
    if (!blob) return blob.error();
    auto v = decode_vcpu_state(*blob);
    if (!v) return v.error().context("machine state: " + what);
    s.vcpus.push_back(std::move(*v));
  }
  auto ports = get_blob(r, kMaxPortDeviceBytes, "port devices");
  if (!ports) return ports.error();
  s.port_devices = std::move(*ports);
  if (version >= 2) {
    uint32_t n = 0;
    if (!r.get(n)) return Error("machine state: cpuid: truncated");
    if (n > kMaxCpuidEntries)
      return Error("machine state: cpuid: " + std::to_string(n) + " entries, at most " +
                   std::to_string(kMaxCpuidEntries));
    s.cpuid.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      kvm_cpuid_entry2& e = s.cpuid[i];
      if (!r.get(e.function) || !r.get(e.index) || !r.get(e.flags) || !r.get(e.eax) ||
          !r.get(e.ebx) || !r.get(e.ecx) || !r.get(e.edx))
        return Error("machine state: cpuid: entry " + std::to_string(i) + ": truncated");
      if ((e.flags & ~uint32_t{KVM_CPUID_FLAG_SIGNIFCANT_INDEX | KVM_CPUID_FLAG_STATEFUL_FUNC |
                               KVM_CPUID_FLAG_STATE_READ_NEXT}) != 0)
        return Error("machine state: cpuid: entry " + std::to_string(i) + ": flags " +
                     std::to_string(e.flags));
    }
  }
  if (!r.rest().empty()) return Error("machine state: trailing bytes");
  return s;
}

}  // namespace shoal

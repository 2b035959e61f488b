// libFuzzer target: the vCPU and VM state decoders. Whatever decodes must encode back to the
// same bytes (the formats have no slack), so a decoder that accepts more than it should shows.
// A version-1 vCPU state (every part whole) is re-encoded as the current version, whose
// encoding must then be stable.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kvm/vcpu_state.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  if (auto v = shoal::decode_vcpu_state(bytes); v.ok()) {
    const std::vector<uint8_t> again = shoal::encode_vcpu_state(*v);
    const bool current = bytes[4] == shoal::kVcpuStateVersion;  // decoded: the header is there
    if (current && again != bytes) __builtin_trap();
    auto w = shoal::decode_vcpu_state(again);
    if (!w.ok() || shoal::encode_vcpu_state(*w) != again) __builtin_trap();
    // And the re-encoding lost nothing (a dropped block would be stable too).
    if (w->xsave != v->xsave || std::memcmp(&w->lapic, &v->lapic, sizeof v->lapic) != 0)
      __builtin_trap();
  }
  if (auto m = shoal::decode_vm_state(bytes); m.ok() && shoal::encode_vm_state(*m) != bytes)
    __builtin_trap();
  return 0;
}

// libFuzzer target: the vCPU and VM state decoders. Whatever decodes must encode back to the
// same bytes (the formats have no slack), so a decoder that accepts more than it should shows.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvm/vcpu_state.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  if (auto v = shoal::decode_vcpu_state(bytes); v.ok() && shoal::encode_vcpu_state(*v) != bytes)
    __builtin_trap();
  if (auto m = shoal::decode_vm_state(bytes); m.ok() && shoal::encode_vm_state(*m) != bytes)
    __builtin_trap();
  return 0;
}

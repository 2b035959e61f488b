// libFuzzer target: the state section of a pod member's snapshot file
// (pod/pod_snapshot_state.hpp). Whatever decodes must encode to something that decodes again.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "pod/pod_snapshot_state.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  auto state = shoal::decode_pod_member_state(bytes);
  if (!state) return 0;
  if (state->host >= state->hosts || state->host_of_vcpu.empty()) __builtin_trap();
  auto again = shoal::decode_pod_member_state(shoal::encode_pod_member_state(*state));
  if (!again || again->memory.homes.size() != state->memory.homes.size() ||
      again->machine.vcpus.size() != state->machine.vcpus.size())
    __builtin_trap();
  return 0;
}

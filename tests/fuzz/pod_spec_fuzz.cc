// libFuzzer target: the pod spec parser (YAML from users) on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "pod/pod_spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = shoal::parse_pod_spec(std::string(reinterpret_cast<const char*>(data), size));
  // Either a spec or at least one error: never both, never neither.
  if (r.spec.has_value() == !r.errors.empty()) __builtin_trap();
  return 0;
}

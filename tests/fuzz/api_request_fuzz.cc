// libFuzzer target: the control API's request parser (any bytes a local client can send) and
// the reply parser `shoal ctl` uses. Neither may throw or crash; a request that parses must
// survive its own round trip.
#include <cstddef>
#include <cstdint>
#include <string>

#include "machine/api_server.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  if (auto r = shoal::parse_api_request(line); r.ok()) {
    auto back = shoal::parse_api_request(shoal::format_api_request(*r));
    if (!back.ok() || back->command != r->command || back->stop != r->stop) __builtin_trap();
  }
  (void)shoal::parse_api_reply(line);
  return 0;
}

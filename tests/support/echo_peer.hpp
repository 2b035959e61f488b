// A peer for shoal's --channel socket that echoes every byte (tests and bench/devices).
#pragma once

#include <cstdint>
#include <string>

namespace shoal::test {

// Connects to the Unix socket at `path` once it exists (trying for up to 60 s) and echoes
// until the other end closes; returns the bytes echoed (0 if it never connected).
uint64_t echo_peer(const std::string& path);

}  // namespace shoal::test

// Monotonic time for counters and watchdogs; wall-clock time for turns hosts share.
#pragma once

#include <chrono>
#include <cstdint>

namespace shoal {

inline uint64_t monotonic_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Wall-clock time, for what hosts must agree on without talking (their clocks are kept in
// step by NTP, or are one clock for netns hosts); it can step, so never for durations.
inline uint64_t wall_clock_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace shoal

// A budget for warnings that a guest (or a peer) can cause as often as it likes: a driver that
// submits bad requests in a loop must not flood the log or spend the VMM's time formatting.
// At most `burst` messages per `interval_ns`; the first one allowed after a quiet stretch
// learns how many were held back, to say so. Thread-safe, lock-free, allocation-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace shoal {

class LogBudget {
 public:
  LogBudget(uint32_t burst, uint64_t interval_ns) : burst_(burst), interval_ns_(interval_ns) {}

  // Whether a message may go out at `now_ns` (monotonic); when it may, `*suppressed` is the
  // number refused since the last one that went out.
  bool allow(uint64_t now_ns, uint64_t* suppressed) {
    uint64_t start = window_start_.load(std::memory_order_relaxed);
    if (now_ns - start >= interval_ns_ &&
        window_start_.compare_exchange_strong(start, now_ns, std::memory_order_relaxed))
      used_.store(0, std::memory_order_relaxed);
    if (used_.fetch_add(1, std::memory_order_relaxed) >= burst_) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }

 private:
  const uint32_t burst_;
  const uint64_t interval_ns_;
  std::atomic<uint64_t> window_start_{0};
  std::atomic<uint32_t> used_{0};
  std::atomic<uint64_t> suppressed_{0};
};

// What to append to the message allow() let through: "" or " (3 more held back)".
inline std::string held_back(uint64_t suppressed) {
  return suppressed == 0 ? std::string() : " (" + std::to_string(suppressed) + " more held back)";
}

}  // namespace shoal

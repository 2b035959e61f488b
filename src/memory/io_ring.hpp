// Owns one io_uring (liburing); move-only. Only what the zero pool's refill worker needs:
// queue madvise requests, submit, and reap completions.
#pragma once

#include <liburing.h>

#include <cstdint>

#include "shoal/status.hpp"

namespace shoal {

class IoRing {
 public:
  static Result<IoRing> create(unsigned entries);
  IoRing(IoRing&& o) noexcept;
  IoRing& operator=(IoRing&& o) noexcept;
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;
  ~IoRing();

  // Queues madvise(addr, len, advice) tagged with `user_data`; false when the SQ is full.
  // liburing 2.3 takes a 32-bit length: callers keep len < 4 GiB.
  bool queue_madvise(void* addr, uint32_t len, int advice, uint64_t user_data);
  // Submits what is queued; returns how many or -errno.
  int submit();
  // Waits for one completion: its user_data and result (-errno on failure).
  Status wait(uint64_t* user_data, int* result);

 private:
  IoRing() = default;
  io_uring ring_{};
  bool live_ = false;
};

}  // namespace shoal

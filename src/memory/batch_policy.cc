#include "memory/batch_policy.hpp"

#include <algorithm>
#include <bit>

namespace shoal {

BatchPolicy::BatchPolicy(Config config)
    : config_(config),
      batch_(std::clamp(config.initial_pages, config.min_pages, config.max_pages)) {}

void BatchPolicy::prefetched(uint64_t page_end) {
  // The stream's next fault is expected past what was prefetched.
  for (Stream& s : streams_)
    if (s.valid && s.end == last_end_) s.end = page_end;
  last_end_ = page_end;
}

PageWindow BatchPolicy::window_for(uint64_t page) {
  // Sequential: the fault lands within one window past where a stream stopped.
  Stream* hit = nullptr;
  for (Stream& s : streams_)
    if (s.valid && page >= s.end && page < s.end + batch_) hit = &s;
  if (hit != nullptr)
    batch_ = std::min(batch_ * 2, config_.max_pages);
  else
    batch_ = std::max(batch_ / 2, config_.min_pages);
  // Power-of-two windows, aligned to their size.
  const uint64_t size = std::bit_floor(static_cast<uint64_t>(batch_));
  const uint64_t first = page & ~(size - 1);
  const bool sequential = hit != nullptr;
  if (hit == nullptr) {
    hit = &streams_[next_slot_];
    next_slot_ = (next_slot_ + 1) % kStreams;
    hit->valid = true;
  }
  hit->end = first + size;
  last_end_ = hit->end;
  return {first, size, sequential};
}

}  // namespace shoal

// How many pages to serve for one fault. A fault just past a recent window means a sequential
// stream: the window doubles. Anything else shrinks it. Windows are aligned to their size:
// aligned batches moved fastest in measurements (docs/memory.md). Pure logic, no locking:
// the fault server owns one per handler thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace shoal {

struct PageWindow {
  uint64_t first;  // page number
  uint64_t count;
  bool sequential = false;  // the fault continued a stream: worth prefetching past the window
};

class BatchPolicy {
 public:
  struct Config {
    uint32_t min_pages = 64;   // below ~10 used pages a fault loses to the kernel's first touch
    uint32_t max_pages = 512;  // 2 MiB: also the zero pool's chunk size
    uint32_t initial_pages = 64;
  };
  BatchPolicy() : BatchPolicy(Config{}) {}
  explicit BatchPolicy(Config config);

  // The window to serve for a fault on `page`; it contains `page`. The caller serves only the
  // dormant run around `page` inside it.
  PageWindow window_for(uint64_t page);
  // The caller also served the pages up to `page_end` (exclusive) past the last window.
  void prefetched(uint64_t page_end);
  uint32_t current_pages() const { return batch_; }

 private:
  static constexpr size_t kStreams = 8;  // remembered windows (one per vCPU stream, roughly)
  struct Stream {
    uint64_t end = 0;  // page after the last window served
    bool valid = false;
  };

  Config config_;
  uint32_t batch_;
  std::array<Stream, kStreams> streams_{};
  size_t next_slot_ = 0;
  uint64_t last_end_ = 0;
};

}  // namespace shoal

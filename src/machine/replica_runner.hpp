// --replica DIR --replica-interval MS: the thread that keeps a storage replica of the running
// guest (memory/replica_store.hpp). Every interval it asks the machine for a checkpoint: the
// machine pauses the guest, takes the pages written or first touched since the last one (the
// first takes every mapped page) and copies them into this shadow mapping, saves the vCPUs and
// devices, re-arms the tracking and resumes the guest; the writing, syncing and applying then
// happen here, beside the running guest. A failed checkpoint stops the guest: it never runs
// on without the replica it was started with.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "memory/replica_store.hpp"
#include "shoal/status.hpp"

namespace shoal {

class ReplicaRunner {
 public:
  static Result<std::unique_ptr<ReplicaRunner>> create(const std::string& dir, uint32_t interval_ms,
                                                       uint64_t ram_bytes);
  ReplicaRunner(const ReplicaRunner&) = delete;
  ReplicaRunner& operator=(const ReplicaRunner&) = delete;
  ~ReplicaRunner();

  // Runs `checkpoint` now and then every interval until stop(); its error goes to `failed`.
  void start(std::function<Status()> checkpoint, std::function<void(const Error&)> failed);
  void stop();  // joins the thread (a checkpoint under way is finished first)

  uint8_t* shadow() const { return shadow_; }
  uint64_t ram_bytes() const { return ram_bytes_; }
  ReplicaStore& store() { return store_; }
  uint32_t interval_ms() const { return interval_ms_; }

  // Kept by the checkpoint (on this thread), read by status and metrics.
  bool first = true;
  std::atomic<uint64_t> checkpoints{0}, last_pages{0}, last_pause_ns{0}, last_write_ns{0};

 private:
  ReplicaRunner(ReplicaStore store, uint32_t interval_ms, uint8_t* shadow, uint64_t ram_bytes)
      : store_(std::move(store)),
        interval_ms_(interval_ms),
        shadow_(shadow),
        ram_bytes_(ram_bytes) {}

  ReplicaStore store_;
  uint32_t interval_ms_;
  uint8_t* shadow_;  // MAP_NORESERVE, guest-sized: a checkpoint's pages between pause and write
  uint64_t ram_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace shoal

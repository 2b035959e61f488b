#include "machine/replica_runner.hpp"

#include <pthread.h>
#include <sys/mman.h>

#include <chrono>

namespace shoal {

Result<std::unique_ptr<ReplicaRunner>> ReplicaRunner::create(const std::string& dir,
                                                             uint32_t interval_ms,
                                                             uint64_t ram_bytes) {
  auto store = ReplicaStore::create(dir, ram_bytes);
  if (!store) return store.error();
  void* shadow = mmap(nullptr, ram_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (shadow == MAP_FAILED) return errno_error("--replica: shadow mapping");
  return std::unique_ptr<ReplicaRunner>(
      new ReplicaRunner(std::move(*store), interval_ms, static_cast<uint8_t*>(shadow), ram_bytes));
}

ReplicaRunner::~ReplicaRunner() {
  stop();
  munmap(shadow_, ram_bytes_);
}

void ReplicaRunner::start(std::function<Status()> checkpoint,
                          std::function<void(const Error&)> failed) {
  thread_ = std::thread([this, checkpoint = std::move(checkpoint), failed = std::move(failed)] {
    pthread_setname_np(pthread_self(), "replica");
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      Status s = checkpoint();
      lock.lock();
      if (!s.ok()) {
        failed(s.error().context("replica " + store_.paths().dir));
        return;
      }
      cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [this] { return stopping_; });
    }
  });
}

void ReplicaRunner::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace shoal

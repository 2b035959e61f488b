#include "pod/pod_placement.hpp"

#include <pthread.h>

#include "shoal/clock.hpp"
#include "shoal/log.hpp"

namespace shoal {

PlacementRunner::PlacementRunner(PlacementConfig config, NodeId self, size_t vcpus,
                                 std::vector<int> capacity, Member member)
    : self_(self),
      capacity_(std::move(capacity)),
      member_(std::move(member)),
      model_(config, self, vcpus, capacity_.size()) {}

PlacementRunner::~PlacementRunner() {
  stop();
}

void PlacementRunner::start() {
  std::lock_guard lock(mu_);  // against a stop() on the monitor thread
  if (stop_ || thread_.joinable()) return;
  thread_ = std::thread([this] { loop(); });
}

void PlacementRunner::stop() {
  std::thread t;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    t = std::move(thread_);
  }
  cv_.notify_all();
  if (t.joinable()) t.join();
}

void PlacementRunner::remote_fault(uint32_t tid, NodeId source) {
  std::lock_guard lock(mu_);
  auto it = vcpu_of_tid_.find(tid);
  if (it != vcpu_of_tid_.end()) model_.remote_fault(it->second, source);
}

void PlacementRunner::proposal(const PlacementProposal& p) {
  {
    std::lock_guard lock(mu_);
    if (stop_ || self_ != 0) return;
    proposals_.push_back(p);
  }
  cv_.notify_all();
}

uint64_t PlacementRunner::moves() const {
  std::lock_guard lock(mu_);
  return moves_;
}

void PlacementRunner::loop() {
  pthread_setname_np(pthread_self(), "placement");
  const auto window = std::chrono::nanoseconds(model_.config().window_ns);
  auto next = std::chrono::steady_clock::now() + window;
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_until(lock, next, [&] { return stop_ || !proposals_.empty(); });
    if (stop_) return;
    // Host 0: carry out what was proposed on the table as it still is.
    while (!proposals_.empty() && !stop_) {
      const PlacementProposal p = proposals_.front();
      proposals_.pop_front();
      lock.unlock();
      if (member_.table().second == p.version) {
        auto moved = member_.move(p.vcpu, p.to);
        if (moved) {
          log::info("placement: {}", *moved);
          std::lock_guard count(mu_);
          ++moves_;
        } else {
          log::info("placement: vcpu {} to host {}: {}", p.vcpu, p.to, moved.error().message());
        }
      }
      lock.lock();
    }
    if (std::chrono::steady_clock::now() < next) continue;
    next = std::chrono::steady_clock::now() + window;
    // The threads of this host's vCPU fds (a moved vCPU runs on its fd's thread here).
    lock.unlock();
    auto threads = member_.threads();
    auto [table, version] = member_.table();
    lock.lock();
    vcpu_of_tid_.clear();
    for (auto [tid, vcpu] : threads) vcpu_of_tid_[tid] = vcpu;
    auto proposed = model_.end_window(monotonic_ns(), table, version, capacity_);
    lock.unlock();
    for (const PlacementProposal& p : proposed) {
      if (self_ == 0) {
        proposal(p);
      } else {
        member_.propose(p);
      }
    }
    lock.lock();
  }
}

}  // namespace shoal

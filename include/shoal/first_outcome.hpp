// The first of several racing outcomes wins: a vCPU powering off, a device asking for a reset, the
// fault server failing, a peer lost, a stop from the user. Later offers are ignored, so exactly
// one reason is reported. Machine and PodMember both end through one of these.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>

namespace shoal {

template <class T>
class FirstOutcome {
 public:
  // True if `value` is the outcome; false if one was offered before.
  bool offer(T value) {
    {
      std::lock_guard lock(mu_);
      if (value_) return false;
      value_ = std::move(value);
    }
    cv_.notify_all();
    return true;
  }
  bool decided() const {
    std::lock_guard lock(mu_);
    return value_.has_value();
  }
  void wait() const {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return value_.has_value(); });
  }
  // True once decided; false when `timeout` passed first.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return value_.has_value(); });
  }
  // The outcome; only once decided (it never changes afterwards).
  const T& get() const {
    std::lock_guard lock(mu_);
    return *value_;
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::optional<T> value_;
};

}  // namespace shoal

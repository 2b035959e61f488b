// Error values that carry context, for code that must not throw (vCPU and fault hot paths).
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace shoal {

class Error {
 public:
  explicit Error(std::string message) : message_(std::move(message)) {}
  const std::string& message() const { return message_; }
  // Prefixes "what: " so errors read outermost-first:
  // "restore vcpu 3: KVM_SET_SREGS: Invalid argument".
  Error context(std::string_view what) const {
    return what.empty() ? *this : Error(std::string(what) + ": " + message_);
  }

 private:
  std::string message_;
};

// "what: strerror(err)".
Error errno_error(std::string_view what, int err = errno);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{""};
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace shoal

// Returns early with the error of `expr` (a Status or Result), adding `what` as context.
#define SHOAL_TRY(expr, what)                                                                      \
  do {                                                                                             \
    if (auto shoal_try_r_ = (expr); !shoal_try_r_.ok()) return shoal_try_r_.error().context(what); \
  } while (0)

// Skips a test, with one line saying why, where /dev/kvm cannot be used.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace shoal::test {

// Empty when /dev/kvm opens read-write; else the reason.
std::string kvm_unavailable_reason();

}  // namespace shoal::test

#define SHOAL_REQUIRE_KVM()                                               \
  do {                                                                    \
    if (auto why = ::shoal::test::kvm_unavailable_reason(); !why.empty()) \
      GTEST_SKIP() << "skipped: needs /dev/kvm (" << why << ")";          \
  } while (0)

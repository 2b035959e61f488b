// Skips a test, with one line saying why, where /dev/kvm cannot be used.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace shoal::test {

// Empty when /dev/kvm opens read-write; else the reason.
std::string kvm_unavailable_reason();

// Empty when this host's CPUs offer VT-x or AMD-V (the "vmx"/"svm" flags in /proc/cpuinfo),
// which a Linux guest needs (its ring 0 is emulated on the nested hosts); else why not.
std::string hardware_virtualization_missing();

// Empty when a Linux guest can boot here: /dev/kvm, hardware virtualization, and `files` (its
// kernel, initramfs, modules) readable; else the one line a test skips with.
std::string linux_guest_unavailable(const std::vector<std::string>& files);

}  // namespace shoal::test

#define SHOAL_REQUIRE_LINUX_GUEST(...)                                                  \
  do {                                                                                  \
    if (auto why = ::shoal::test::linux_guest_unavailable({__VA_ARGS__}); !why.empty()) \
      GTEST_SKIP() << why;                                                              \
  } while (0)

#define SHOAL_REQUIRE_KVM()                                               \
  do {                                                                    \
    if (auto why = ::shoal::test::kvm_unavailable_reason(); !why.empty()) \
      GTEST_SKIP() << "skipped: needs /dev/kvm (" << why << ")";          \
  } while (0)

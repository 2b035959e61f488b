// Helpers for the tests that make hosts in network namespaces (scripts/netns-cluster).
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace shoal::test {

// Empty when `ip netns` can be used here (root, the tool works); else why not.
std::string netns_unavailable_reason();
// Writes `text` to a file of that name in the test's temporary directory; returns its path.
std::string write_temp_file(const std::string& name, const std::string& text);

}  // namespace shoal::test

#define SHOAL_REQUIRE_NETNS()                                               \
  do {                                                                      \
    if (auto why = ::shoal::test::netns_unavailable_reason(); !why.empty()) \
      GTEST_SKIP() << "skipped: " << why;                                   \
  } while (0)

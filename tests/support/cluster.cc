#include "support/cluster.hpp"

#include <unistd.h>

#include <fstream>

#include "support/process.hpp"

namespace shoal::test {

std::string netns_unavailable_reason() {
  if (geteuid() != 0) return "needs root for ip netns";
  auto r = run_process({"/usr/bin/env", "ip", "netns", "list"}, std::chrono::seconds(10));
  if (r.exit_code != 0) return "ip netns unavailable: " + r.err;
  return {};
}

std::string write_temp_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace shoal::test

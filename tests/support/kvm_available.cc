#include "support/kvm_available.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace shoal::test {

std::string kvm_unavailable_reason() {
  const int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  close(fd);
  return {};
}

std::string hardware_virtualization_missing() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line);
    for (std::string w; words >> w;)
      if (w == "vmx" || w == "svm") return {};
    return "no vmx/svm flag in /proc/cpuinfo; run through scripts/test-vm";
  }
  return "no CPU flags in /proc/cpuinfo";
}

std::string linux_guest_unavailable(const std::vector<std::string>& files) {
  if (auto why = kvm_unavailable_reason(); !why.empty())
    return "skipped: needs /dev/kvm (" + why + ")";
  if (auto why = hardware_virtualization_missing(); !why.empty())
    return "skipped: a Linux guest needs hardware virtualization (" + why + ")";
  for (const std::string& f : files)
    if (access(f.c_str(), R_OK) != 0) return "skipped: " + f + " missing; run scripts/setup";
  return {};
}

}  // namespace shoal::test

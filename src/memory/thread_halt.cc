#include "memory/thread_halt.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

namespace shoal {

bool wchan_is_kvm_halt(std::string_view wchan) {
  while (!wchan.empty() && (wchan.back() == '\n' || wchan.back() == ' ')) wchan.remove_suffix(1);
  return wchan == "kvm_vcpu_block" || wchan == "kvm_vcpu_halt";
}

bool thread_halted_in_kvm(uint32_t tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%u/wchan", tid);
  // Read once per question (a few microseconds): the answer is stale as soon as it is read,
  // and only asked for a page some other host wants while its hold lasts.
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  return n > 0 && wchan_is_kvm_halt(std::string_view(buf, static_cast<size_t>(n)));
}

}  // namespace shoal

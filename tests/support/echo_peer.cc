#include "support/echo_peer.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace shoal::test {

uint64_t echo_peer(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  int fd = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    ::close(fd);
    fd = -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (fd < 0) return 0;
  uint64_t total = 0;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0; total += static_cast<uint64_t>(n))
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(fd, buf + done, static_cast<size_t>(n - done));
      if (w <= 0) {
        ::close(fd);
        return total;
      }
      done += w;
    }
  ::close(fd);
  return total;
}

}  // namespace shoal::test

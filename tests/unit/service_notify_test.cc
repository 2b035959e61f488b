// The service-manager notification protocol against a NOTIFY_SOCKET of the test's own.
#include "shoal/service_notify.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "shoal/unique_fd.hpp"

namespace shoal {
namespace {

// Binds a datagram socket at `name` (a path, or '@' for an abstract name) and returns it.
UniqueFd listen_at(const std::string& name) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name[0] == '@') addr.sun_path[0] = '\0';
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len), 0) << strerror(errno);
  return fd;
}

std::string receive(const UniqueFd& fd) {
  char buf[512];
  const ssize_t n = recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
  return n < 0 ? std::string("(nothing)") : std::string(buf, static_cast<size_t>(n));
}

TEST(ServiceNotify, SendsEachStateAsOneDatagramToThePath) {
  const std::string path = ::testing::TempDir() + "/notify-" + std::to_string(getpid());
  unlink(path.c_str());
  UniqueFd fd = listen_at(path);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  EXPECT_TRUE(notify_service_manager("READY=1\nSTATUS=listening on 127.0.0.1:7000"));
  EXPECT_TRUE(notify_service_manager("STOPPING=1"));
  EXPECT_EQ(receive(fd), "READY=1\nSTATUS=listening on 127.0.0.1:7000");
  EXPECT_EQ(receive(fd), "STOPPING=1");
  unsetenv("NOTIFY_SOCKET");
  unlink(path.c_str());
}

TEST(ServiceNotify, AbstractSocketNames) {
  const std::string name = "@shoal-notify-test-" + std::to_string(getpid());
  UniqueFd fd = listen_at(name);
  setenv("NOTIFY_SOCKET", name.c_str(), 1);
  EXPECT_TRUE(notify_service_manager("STATUS=running pod p"));
  EXPECT_EQ(receive(fd), "STATUS=running pod p");
  unsetenv("NOTIFY_SOCKET");
}

TEST(ServiceNotify, WithoutAServiceManagerNothingIsSent) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(notify_service_manager("READY=1"));
  setenv("NOTIFY_SOCKET", "relative/path", 1);  // neither a path nor an abstract name
  EXPECT_FALSE(notify_service_manager("READY=1"));
  setenv("NOTIFY_SOCKET", "/nonexistent/shoal/notify", 1);
  EXPECT_FALSE(notify_service_manager("READY=1"));
  unsetenv("NOTIFY_SOCKET");
}

}  // namespace
}  // namespace shoal

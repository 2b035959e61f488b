// The service-manager notification protocol against a NOTIFY_SOCKET of the test's own.
#include "shoal/service_notify.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "shoal/unique_fd.hpp"
#include "support/notify_socket.hpp"

namespace shoal {
namespace {

using test::listen_for_notifications;

TEST(ServiceNotify, SendsEachStateAsOneDatagramToThePath) {
  const std::string path = ::testing::TempDir() + "/notify-" + std::to_string(getpid());
  unlink(path.c_str());
  UniqueFd fd = listen_for_notifications(path);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  EXPECT_TRUE(notify_service_manager("READY=1\nSTATUS=listening on 127.0.0.1:7000"));
  EXPECT_TRUE(notify_service_manager("STOPPING=1"));
  EXPECT_EQ(test::next_notification(fd), "READY=1\nSTATUS=listening on 127.0.0.1:7000");
  EXPECT_EQ(test::next_notification(fd), "STOPPING=1");
  unsetenv("NOTIFY_SOCKET");
  unlink(path.c_str());
}

TEST(ServiceNotify, AbstractSocketNames) {
  const std::string name = "@shoal-notify-test-" + std::to_string(getpid());
  UniqueFd fd = listen_for_notifications(name);
  setenv("NOTIFY_SOCKET", name.c_str(), 1);
  EXPECT_TRUE(notify_service_manager("STATUS=running pod p"));
  EXPECT_EQ(test::next_notification(fd), "STATUS=running pod p");
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

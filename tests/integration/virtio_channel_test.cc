// The shared-memory channel end to end: the test guest's polling virtio-console driver
// (guest/virtio_chan.c) sends messages through shoal's device to a peer on the host, a Unix
// socket client in this test that echoes every byte, and checks what comes back.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "support/echo_peer.hpp"
#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

TEST(VirtioChannel, EveryMessageComesBackThroughAHostPeer) {
  SHOAL_REQUIRE_KVM();
  const std::string sock = ::testing::TempDir() + "shoal-chan-" + std::to_string(getpid());
  for (const auto& [n, bytes] : {std::pair{2000, 64}, std::pair{200, 4000}}) {
    uint64_t echoed = 0;
    std::thread peer([&] { echoed = echo_peer(sock); });
    auto r = run_process({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", "128M",
                          "--cmdline", "chan " + std::to_string(n) + " " + std::to_string(bytes),
                          "--channel", sock, "--log-level", "warn"},
                         std::chrono::seconds(120));
    peer.join();
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("chan n=" + std::to_string(n) + " bytes=" + std::to_string(bytes)),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find(" bad=0"), std::string::npos) << r.out;
    EXPECT_EQ(echoed, static_cast<uint64_t>(n) * bytes);
    EXPECT_NE(::access(sock.c_str(), F_OK), 0) << "shoal leaves no socket behind";
  }
}

TEST(VirtioChannel, BadSocketPathsAreRefusedBeforeTheGuestStarts) {
  SHOAL_REQUIRE_KVM();
  const std::string file = ::testing::TempDir() + "shoal-not-a-socket-" + std::to_string(getpid());
  ASSERT_EQ(::close(::creat(file.c_str(), 0644)), 0);
  auto r = run_process(
      {SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--cmdline", "hello", "--channel", file},
      std::chrono::seconds(60));
  ::unlink(file.c_str());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--channel " + file + ": exists and is not a socket"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("shoal-guest"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace shoal::test

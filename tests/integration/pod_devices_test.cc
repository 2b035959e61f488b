// Host 0's devices in a pod, driven by a vCPU on host 1. virtio-blk: the disk is host 0's, the
// vCPU that drives it runs on host 1. Its MMIO accesses to the transport are forwarded to
// host 0, its QueueNotify writes too (the ioeventfd is host 0's), and host 0's device worker
// reads and writes the rings and buffers through coherent memory, fetching the pages from
// host 1. The channel (spec.channel) the same way, with a peer on host 0's socket.
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "support/cluster.hpp"
#include "support/echo_peer.hpp"
#include "support/guest_results.hpp"
#include "support/pod_cluster.hpp"

namespace shoal::test {
namespace {

// Two hosts, vCPU 0 (the one that runs the test guest's command) on h1, vCPU 1 on h0;
// `devices`: the spec's device lines.
std::string device_pod_spec(const std::string& cmdline, const std::string& devices) {
  return write_temp_file(
      "pod-devices.yaml",
      "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: poddevices}\nspec:\n"
      "  guest: {kernel: " SHOAL_TEST_GUEST ", cmdline: \"" +
          cmdline + "\"}\n  memory: 256M\n  vcpus: 2\n  placement: static\n  secretFile: " +
          pod_secret() + "\n  failureTimeout: " + pod_failure_timeout() + "\n" + devices +
          "  hosts:\n"
          "    - {name: h0, address: \"127.77.0.1:7100\", vcpus: \"1\", memory: even}\n"
          "    - {name: h1, address: \"127.77.0.2:7100\", vcpus: \"0\", memory: even}\n");
}

std::string disk_pod_spec(const std::string& cmdline, const std::string& disk) {
  return device_pod_spec(cmdline, "  disks: [\"" + disk + "\"]\n");
}

TEST(PodDisk, AVcpuOnTheSecondHostWritesAndReadsHostZerosDisk) {
  SHOAL_REQUIRE_POD_HOSTS();
  const std::string image = ::testing::TempDir() + "shoal-pod-disk-" + std::to_string(getpid());
  ASSERT_TRUE(write_blk_image(image, 8 << 20));
  // After the pod, host 0's node lets go of the image (and of the guest): a finished pod is
  // not held until the next one.
  const std::string base = image.substr(image.rfind('/') + 1);
  auto w = in_cluster(
      2, disk_pod_spec("blk-write 2", image),
      "$SHOAL pod up $SPEC; echo up-exit=$?; node=${SHOAL_NODE_PIDS%% *}; "
      "for i in $(seq 100); do ls -l /proc/$node/fd | grep -q " +
          base + " || break; sleep 0.1; done; echo image-open=$(ls -l /proc/$node/fd | grep -c " +
          base + "); $SHOAL pod status $SPEC");
  EXPECT_NE(w.out.find("up-exit=0"), std::string::npos) << w.out << w.err;
  EXPECT_NE(w.out.find(" bad=0 errors=0"), std::string::npos) << w.out << w.err;
  EXPECT_NE(w.out.find("image-open=0"), std::string::npos) << w.out;
  EXPECT_NE(w.out.find("h0: pod poddevices host h0 (1/2): stopped"), std::string::npos) << w.out;
  // What the first pod wrote is in the file, and a second pod's vCPU on h1 reads it back.
  const uint64_t after = expected_blk_read_checksum(image, 2);
  auto r = in_cluster(2, disk_pod_spec("blk-read 2", image), "$SHOAL pod up $SPEC");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("checksum=" + hex64(after) + " errors=0"), std::string::npos)
      << r.out << r.err;
  ::unlink(image.c_str());
}

// The channel's socket is host 0's (a Unix socket's path is the file system's, not the
// namespace's, so this process's peer reaches it); the guest's messages go through rings and
// buffers that live on host 1.
TEST(PodChannel, AVcpuOnTheSecondHostGetsBackEveryMessageThroughHostZerosChannel) {
  SHOAL_REQUIRE_POD_HOSTS();
  const std::string sock = ::testing::TempDir() + "shoal-pod-chan-" + std::to_string(getpid());
  const int n = 100, bytes = 1000;
  uint64_t echoed = 0;
  std::thread peer([&] { echoed = echo_peer(sock); });
  auto r = in_cluster(2,
                      device_pod_spec("chan " + std::to_string(n) + " " + std::to_string(bytes),
                                      "  channel: " + sock + "\n"),
                      "$SHOAL pod up $SPEC");
  peer.join();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("chan n=" + std::to_string(n) + " bytes=" + std::to_string(bytes)),
            std::string::npos)
      << r.out << r.err;
  EXPECT_NE(r.out.find(" bad=0"), std::string::npos) << r.out;
  EXPECT_EQ(echoed, static_cast<uint64_t>(n) * bytes);
  EXPECT_NE(::access(sock.c_str(), F_OK), 0) << "host 0 leaves no socket behind";
}

}  // namespace
}  // namespace shoal::test

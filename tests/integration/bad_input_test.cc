// Bad input: one line that names the problem, exit code 2 (usage) or 1 (VMM), never a crash.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

using std::chrono::seconds;

void expect_one_line_error(const ProcessResult& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_NE(r.err.find("shoal: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
}

std::string write_temp(const std::string& name, size_t size, char fill) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << std::string(size, fill);
  return path;
}

ProcessResult shoal(std::vector<std::string> args) {
  args.insert(args.begin(), {SHOAL_BINARY, "run"});
  return run_process(args, seconds(60));
}

TEST(BadInput, MissingKernel) {
  expect_one_line_error(shoal({"--kernel", "/nonexistent/vmlinuz"}), 2, "/nonexistent/vmlinuz");
}

TEST(BadInput, KernelIsADirectory) {
  SHOAL_REQUIRE_KVM();
  expect_one_line_error(shoal({"--kernel", ::testing::TempDir()}), 1, "not a regular file");
}

TEST(BadInput, NeitherBzImageNorElf) {
  SHOAL_REQUIRE_KVM();
  const auto junk = write_temp("junk.bin", 8192, 'z');
  expect_one_line_error(shoal({"--kernel", junk}), 1, "neither a bzImage nor an ELF");
}

TEST(BadInput, InitrdThatDoesNotFit) {
  SHOAL_REQUIRE_KVM();
  const auto initrd = write_temp("big-initrd.img", 12 << 20, 'i');
  expect_one_line_error(
      shoal({"--kernel", SHOAL_TEST_GUEST, "--memory", "16M", "--initrd", initrd}), 1,
      "does not fit");
}

TEST(BadInput, MemorySizes) {
  expect_one_line_error(shoal({"--kernel", SHOAL_TEST_GUEST, "--memory", "0"}), 2, "--memory 0");
  expect_one_line_error(shoal({"--kernel", SHOAL_TEST_GUEST, "--memory", "12Q"}), 2, "'Q'");
  SHOAL_REQUIRE_KVM();
  // More than a 48-bit (or narrower) guest physical address space holds.
  expect_one_line_error(shoal({"--kernel", SHOAL_TEST_GUEST, "--memory", "1000000T"}), 2,
                        "physical address space");
}

TEST(BadInput, VcpuCounts) {
  expect_one_line_error(shoal({"--kernel", SHOAL_TEST_GUEST, "--vcpus", "0"}), 2, "--vcpus 0");
  SHOAL_REQUIRE_KVM();
  expect_one_line_error(shoal({"--kernel", SHOAL_TEST_GUEST, "--vcpus", "100000"}), 2,
                        "--vcpus 100000: at most");
}

TEST(BadInput, PodSpecErrorsAreListedWithPathsAndExit2) {
  const std::string path = ::testing::TempDir() + "/bad-pod.yaml";
  std::ofstream(path)
      << "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: x}\nspec:\n"
         "  guest: {kernel: /k}\n  memory: 1G\n  vcpus: two\n"
         "  secretFile: /s\n  hosts:\n    - {name: a, address: nowhere, vcpus: [0]}\n";
  auto r = run_process({SHOAL_BINARY, "pod", "validate", path}, seconds(30));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("spec.vcpus (line 7): expected an integer, got 'two'"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("spec.hosts[0].address (line 10): expected HOST:PORT, got 'nowhere'"),
            std::string::npos)
      << r.err;
  auto good = run_process(
      {SHOAL_BINARY, "pod", "validate", std::string(SHOAL_SOURCE_DIR) + "/configs/pod-2hosts.yaml"},
      seconds(30));
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_NE(good.out.find("pod counter-demo: 4 vCPUs, 1 GiB over 2 hosts"), std::string::npos);
  EXPECT_NE(good.out.find("  transport tcp, failure timeout 1000 ms, page hold 200 us, placement "),
            std::string::npos)
      << good.out;
  auto devices = run_process({SHOAL_BINARY, "pod", "validate",
                              std::string(SHOAL_SOURCE_DIR) + "/configs/pod-devices.yaml"},
                             seconds(30));
  EXPECT_EQ(devices.exit_code, 0) << devices.err;
  EXPECT_NE(devices.out.find("  devices on host-a: disk /srv/shoal/root.img, net tap=shoal0, "
                             "channel /run/shoal/devices-demo.sock\n"),
            std::string::npos)
      << devices.out;
  EXPECT_NE(devices.out.find("  host-b 10.77.0.2:7100  vcpus none (at most 1)"), std::string::npos)
      << devices.out;
}

}  // namespace
}  // namespace shoal::test

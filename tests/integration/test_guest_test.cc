// The bundled test guest on real /dev/kvm with 1, 2 and 4 vCPUs.
#include <gtest/gtest.h>

#include <cstdio>
#include <regex>

#include "support/guest_results.hpp"
#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

using std::chrono::seconds;

ProcessResult run_guest(int vcpus, const std::string& workload,
                        const std::string& memory = "256M") {
  return run_process(
      {SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", memory, "--vcpus",
       std::to_string(vcpus), "--cmdline", workload, "--log-level", "warn"},
      seconds(120));
}

class TestGuest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SHOAL_REQUIRE_KVM(); }
};

TEST_P(TestGuest, CounterTotalIsExact) {
  const int vcpus = GetParam();
  auto r = run_guest(vcpus, "counter 250000");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string total = std::to_string(250000ull * vcpus);
  EXPECT_NE(r.out.find("counter vcpus=" + std::to_string(vcpus) + " total=" + total +
                       " expected=" + total),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("result ok"), std::string::npos);
}

TEST_P(TestGuest, TouchChecksumMatches) {
  auto r = run_guest(GetParam(), "touch 64");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("touch mib=64 pages=16384 checksum=" + hex64(expected_touch_checksum(64)) +
                       " bad=0"),
            std::string::npos)
      << r.out;
}

TEST_P(TestGuest, ComputeIsDeterministic) {
  auto r = run_guest(GetParam(), "compute 3000000");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("compute n=3000000 result=" + hex64(expected_compute(3000000))),
            std::string::npos)
      << r.out;
}

INSTANTIATE_TEST_SUITE_P(Vcpus, TestGuest, ::testing::Values(1, 2, 4),
                         [](const auto& info) { return std::to_string(info.param) + "vcpus"; });

TEST(TestGuestExit, GuestExitCodeBecomesShoals) {
  SHOAL_REQUIRE_KVM();
  auto r = run_guest(1, "no-such-workload");
  EXPECT_EQ(r.exit_code, 64) << r.out << r.err;
  EXPECT_NE(r.out.find("unknown workload"), std::string::npos);
}

TEST(TestGuestExit, SerialToFile) {
  SHOAL_REQUIRE_KVM();
  const std::string path = ::testing::TempDir() + "/shoal-serial.txt";
  auto r = run_process({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", "64M",
                        "--cmdline", "hello", "--serial", path, "--log-level", "warn"},
                       seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  FILE* f = std::fopen(path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[256] = {};
  std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  EXPECT_NE(std::string(buf).find("hello from 1 vCPUs"), std::string::npos) << buf;
}

}  // namespace
}  // namespace shoal::test

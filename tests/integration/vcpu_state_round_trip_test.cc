// VcpuState with real KVM: the test guest's `compute`, paused at random points, its vCPUs, VM,
// port devices and RAM moved into a fresh VM in the same process, finishes there with the result
// an uninterrupted run gives. With 1 and 4 vCPUs. The fresh VM is booted for a different
// workload (`compute 1`), so a restore that did not take would show.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "machine/machine.hpp"
#include "support/guest_results.hpp"
#include "support/kvm_available.hpp"

namespace shoal::test {
namespace {

using Clock = std::chrono::steady_clock;

// ~0.3 s a vCPU on the development hosts: long enough to pause in the middle of.
constexpr uint64_t kSteps = 100'000'000;

RunConfig config(int vcpus, const std::string& serial, uint64_t steps = kSteps) {
  RunConfig c;
  c.kernel = SHOAL_TEST_GUEST;
  c.cmdline = "compute " + std::to_string(steps);
  c.memory = 256ull << 20;
  c.vcpus = vcpus;
  c.serial = serial;
  c.log_level = "warn";
  return c;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class VcpuStateRoundTrip : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SHOAL_REQUIRE_KVM(); }
  std::string serial(const std::string& what) {
    return ::testing::TempDir() + "/shoal-roundtrip-" + std::to_string(getpid()) + "-" + what;
  }
};

TEST_P(VcpuStateRoundTrip, PausedAnywhereAndMovedToAFreshVmGivesTheSameResult) {
  const int vcpus = GetParam();
  const std::string expected =
      "compute n=" + std::to_string(kSteps) + " result=" + hex64(expected_compute(kSteps));

  // Uninterrupted, for the duration to pick pause points from.
  auto kvm = Kvm::open();
  ASSERT_TRUE(kvm.ok()) << kvm.error().message();
  auto whole = Machine::create(std::move(*kvm), config(vcpus, serial("whole")));
  ASSERT_TRUE(whole.ok()) << whole.error().message();
  const auto t0 = Clock::now();
  auto code = (*whole)->run();
  const auto duration = Clock::now() - t0;
  ASSERT_TRUE(code.ok()) << code.error().message();
  ASSERT_EQ(*code, 0);
  ASSERT_NE(slurp(serial("whole")).find(expected), std::string::npos) << slurp(serial("whole"));
  whole->reset();

  std::mt19937 rng(::testing::UnitTest::GetInstance()->random_seed());
  for (int round = 0; round < 3; ++round) {
    // Between 10% and 60% of the way: the guest is computing, its result not yet printed.
    const auto pause_after = std::chrono::duration_cast<std::chrono::microseconds>(
        duration * std::uniform_real_distribution<double>(0.1, 0.6)(rng));
    SCOPED_TRACE("round " + std::to_string(round) + ", paused after " +
                 std::to_string(pause_after.count()) + " us");
    auto kvm_a = Kvm::open();
    ASSERT_TRUE(kvm_a.ok());
    auto a = Machine::create(std::move(*kvm_a), config(vcpus, serial("a")));
    ASSERT_TRUE(a.ok()) << a.error().message();
    Result<int> a_code = 0;
    std::thread runner([&] { a_code = (*a)->run(); });
    std::this_thread::sleep_for(pause_after);
    auto state = (*a)->pause_and_save();
    ASSERT_TRUE(state.ok()) << state.error().message();
    ASSERT_EQ(state->vcpus.size(), static_cast<size_t>(vcpus));
    EXPECT_GT(state->vcpus[0].msrs.size(), 0u);

    auto kvm_b = Kvm::open();
    ASSERT_TRUE(kvm_b.ok());
    // The fresh VM boots `compute 1`: only a restore that really took its place prints the
    // result of the paused run's `compute`.
    auto b = Machine::create(std::move(*kvm_b), config(vcpus, serial("b"), 1));
    ASSERT_TRUE(b.ok()) << b.error().message();
    Status restored = (*b)->restore(*state, (*a)->ram());
    (*a)->stop();
    runner.join();
    ASSERT_TRUE(restored.ok()) << restored.error().message();
    const std::string a_out = slurp(serial("a"));
    a->reset();  // the source is gone before the copy runs
    ASSERT_EQ(a_out.find("result="), std::string::npos)
        << "paused too late to show anything: " << a_out;

    auto b_code = (*b)->run();
    ASSERT_TRUE(b_code.ok()) << b_code.error().message();
    EXPECT_EQ(*b_code, 0);
    const std::string b_out = slurp(serial("b"));
    EXPECT_NE(b_out.find(expected), std::string::npos) << b_out;
    EXPECT_NE(b_out.find("result ok"), std::string::npos) << b_out;
  }
}

INSTANTIATE_TEST_SUITE_P(Vcpus, VcpuStateRoundTrip, ::testing::Values(1, 4),
                         [](const auto& info) { return std::to_string(info.param) + "vcpus"; });

}  // namespace
}  // namespace shoal::test

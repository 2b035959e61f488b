// The interrupt sink on real KVM (arch/interrupt_sink.hpp): vCPU fds parked in the sink take
// the interrupts sent to their APIC IDs, fixed and NMI, and report each vector exactly once;
// leaving the sink hands back what was still pending in the LAPIC. An AP's shadow enters the
// sink only after the INIT and SIPI that start it, which it reports.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "arch/interrupt_sink.hpp"
#include "machine/machine_core.hpp"
#include "support/kvm_available.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;

// What the sinks reported, per vCPU and vector.
class Reports {
 public:
  void add(int vcpu, uint8_t vector) {
    std::lock_guard lock(mu_);
    ++count_[{vcpu, vector}];
    cv_.notify_all();
  }
  int count(int vcpu, uint8_t vector) {
    std::lock_guard lock(mu_);
    return count_[{vcpu, vector}];
  }
  bool wait(int vcpu, uint8_t vector, int n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_[{vcpu, vector}] >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<int, uint8_t>, int> count_;
};

class InterruptSink : public ::testing::Test {
 protected:
  void SetUp() override {
    SHOAL_REQUIRE_KVM();
    auto kvm = Kvm::open();
    ASSERT_TRUE(kvm.ok()) << kvm.error().message();
    auto core = MachineCore::create(std::move(*kvm), 64ull << 20, {.interrupt_sink = true});
    ASSERT_TRUE(core.ok()) << core.error().message();
    core_ = std::move(*core);
    core_->set_interrupt_sink([this](int vcpu, ApicDelivery d, uint8_t v) {
      if (d == ApicDelivery::kInit || d == ApicDelivery::kStartup) {
        std::lock_guard lock(mu_);
        starts_.emplace_back(vcpu, d, v);
        return;
      }
      reports_.add(vcpu, v);
    });
    BootPlan plan;
    ASSERT_TRUE(core_
                    ->create_vcpus({0, 1}, 2, plan,
                                   [this](int id, const ExitAction& a, const std::string& st) {
                                     std::lock_guard lock(mu_);
                                     failed_ = describe_vcpu_end(id, a, st).reason;
                                   })
                    .ok());
    core_->command_vcpus(VcpuCommand::kSink);
    core_->start_vcpus();
    // vCPU 1 is an AP nobody has started: its shadow waits for the INIT and SIPI another host's
    // BSP would send, reports both, and only then enters the sink.
    for (auto [delivery, vector] : {std::pair{ApicDelivery::kInit, uint8_t{0}},
                                    std::pair{ApicDelivery::kStartup, uint8_t{0x10}}}) {
      auto r = core_->vm().signal_msi(1, vector, delivery);
      ASSERT_TRUE(r.ok()) << r.error().message();
    }
    const auto started_by = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < started_by) {
      {
        std::lock_guard lock(mu_);
        if (starts_.size() >= 2) break;
      }
      std::this_thread::sleep_for(1ms);
    }
    {
      std::lock_guard lock(mu_);
      using Start = std::tuple<int, ApicDelivery, uint8_t>;
      ASSERT_EQ(starts_, (std::vector<Start>{{1, ApicDelivery::kInit, 0},
                                             {1, ApicDelivery::kStartup, 0x10}}));
    }
    // The sink software-enables its LAPIC in its start-up; until then KVM drops fixed MSIs.
    for (int id : {0, 1}) {
      const auto deadline = std::chrono::steady_clock::now() + 10s;
      bool taken = false;
      while (!taken && std::chrono::steady_clock::now() < deadline) {
        auto r = core_->vm().signal_msi(static_cast<uint32_t>(id), 0x30, ApicDelivery::kFixed);
        ASSERT_TRUE(r.ok()) << r.error().message();
        taken = *r;
        if (!taken) std::this_thread::sleep_for(1ms);
      }
      ASSERT_TRUE(taken) << "vcpu " << id << "'s sink never enabled its LAPIC";
      ASSERT_TRUE(reports_.wait(id, 0x30, 1, 10s));
    }
  }
  void TearDown() override {
    if (core_) core_->stop_vcpus();
    std::lock_guard lock(mu_);
    EXPECT_EQ(failed_, "");
  }

  std::unique_ptr<MachineCore> core_;
  Reports reports_;
  std::mutex mu_;
  std::string failed_;
  std::vector<std::tuple<int, ApicDelivery, uint8_t>> starts_;  // INIT and SIPI reports
};

TEST_F(InterruptSink, ReportsEachFixedInterruptAndNmiOnceForItsOwnVcpu) {
  constexpr int kRounds = 300;
  for (int i = 0; i < kRounds; ++i) {
    // One outstanding per vector: a second one sent while the first is pending would merge
    // with it in the IRR, as on hardware.
    const uint8_t vector = static_cast<uint8_t>(0x40 + i % 4);
    const int vcpu = i % 2;
    const int before = reports_.count(vcpu, vector);
    auto r = core_->vm().signal_msi(static_cast<uint32_t>(vcpu), vector, ApicDelivery::kFixed);
    ASSERT_TRUE(r.ok() && *r);
    ASSERT_TRUE(reports_.wait(vcpu, vector, before + 1, 10s)) << "round " << i;
  }
  for (int i = 0; i < 20; ++i) {
    auto r = core_->vm().signal_msi(1, 0, ApicDelivery::kNmi);
    ASSERT_TRUE(r.ok() && *r);
    ASSERT_TRUE(reports_.wait(1, kNmiVector, i + 1, 10s)) << "NMI " << i;
  }
  std::this_thread::sleep_for(50ms);
  int fixed = 0;
  for (int vcpu : {0, 1})
    for (uint8_t v = 0x40; v < 0x44; ++v) fixed += reports_.count(vcpu, v);
  EXPECT_EQ(fixed, kRounds);
  EXPECT_EQ(reports_.count(1, kNmiVector), 20);
  EXPECT_EQ(reports_.count(0, kNmiVector), 0);
}

TEST_F(InterruptSink, LeavingTheSinkHandsBackWhatIsStillPending) {
  VcpuThread* v = core_->vcpu(1);
  ASSERT_NE(v, nullptr);
  v->send(VcpuCommand::kPause);
  ASSERT_TRUE(v->wait_for(VcpuRunState::kPaused, 5s));
  auto state = v->save().get();
  ASSERT_TRUE(state.ok()) << state.error().message();
  // Paused, the fd takes no interrupt: these wait in its LAPIC.
  ASSERT_TRUE(*core_->vm().signal_msi(1, 0x55, ApicDelivery::kFixed));
  ASSERT_TRUE(*core_->vm().signal_msi(1, 0x66, ApicDelivery::kFixed));
  clear_pending_vectors(state->lapic);
  auto pending = v->leave_sink(std::move(*state)).get();
  ASSERT_TRUE(pending.ok()) << pending.error().message();
  EXPECT_EQ(*pending, (std::vector<uint8_t>{0x55, 0x66}));
  EXPECT_EQ(v->state(), VcpuRunState::kPaused);
  EXPECT_EQ(reports_.count(1, 0x55), 0);
}

}  // namespace
}  // namespace shoal::test

// The vCPU state machine, driven through a fake hypervisor backend.
#include "vcpu/vcpu_thread.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <thread>

namespace shoal {
namespace {

// Hands out scripted exits; with none left it behaves like a guest that runs until kicked.
class FakeBackend : public VcpuBackend {
 public:
  int id() const override { return 7; }
  VcpuExit run() override {
    ++runs;
    {
      std::lock_guard lock(mu);
      if (!script.empty()) {
        VcpuExit e = script.front();
        script.pop_front();
        return e;
      }
    }
    while (!immediate_exit.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    return InterruptedExit{};
  }
  void request_immediate_exit() override { immediate_exit = true; }
  void clear_immediate_exit() override { immediate_exit = false; }
  std::string describe_state() const override { return "rip=0xfake"; }

  std::mutex mu;
  std::deque<VcpuExit> script;
  std::atomic<bool> immediate_exit{false};
  std::atomic<int> runs{0};
};

class Sink : public BusDevice {
 public:
  void read(uint64_t, std::span<uint8_t>) override {}
  void write(uint64_t, std::span<const uint8_t> d) override { bytes += static_cast<int>(d.size()); }
  std::atomic<int> bytes{0};
};

TEST(VcpuStateMachine, Transitions) {
  EXPECT_EQ(next_state(VcpuRunState::kRunning, VcpuCommand::kPause), VcpuRunState::kPaused);
  EXPECT_EQ(next_state(VcpuRunState::kPaused, VcpuCommand::kResume), VcpuRunState::kRunning);
  EXPECT_EQ(next_state(VcpuRunState::kPaused, VcpuCommand::kStop), VcpuRunState::kStopped);
  EXPECT_EQ(next_state(VcpuRunState::kStopped, VcpuCommand::kResume), VcpuRunState::kStopped);
  EXPECT_STREQ(state_name(VcpuRunState::kPaused), "paused");
}

struct Fixture {
  Fixture() { EXPECT_TRUE(pio.insert(0x3f8, 8, sink, "sink").ok()); }
  std::shared_ptr<Sink> sink = std::make_shared<Sink>();
  IoBus pio{"pio"}, mmio{"mmio"};
};

TEST(VcpuThread, HandlesExitsThenReportsAFailureWithRegisters) {
  Fixture f;
  auto backend = std::make_unique<FakeBackend>();
  static uint8_t byte = 'x';
  backend->script = {IoExit{0x3f8, 1, true, 1, {&byte, 1}}, ShutdownExit{}};
  std::atomic<bool> done{false};
  std::string reason, state;
  VcpuThread t(std::move(backend), ExitBuses{f.pio, f.mmio},
               [&](int id, const ExitAction& a, const std::string& st) {
                 EXPECT_EQ(id, 7);
                 reason = std::get<ExitFail>(a).reason;
                 state = st;
                 done = true;
               });
  t.start();
  t.wait_for(VcpuRunState::kStopped);
  t.join();
  EXPECT_TRUE(done);
  EXPECT_EQ(f.sink->bytes, 1);
  EXPECT_NE(reason.find("triple fault"), std::string::npos);
  EXPECT_EQ(state, "rip=0xfake");
}

TEST(VcpuThread, PauseResumeStop) {
  Fixture f;
  auto backend = std::make_unique<FakeBackend>();
  FakeBackend* fake = backend.get();
  VcpuThread t(std::move(backend), ExitBuses{f.pio, f.mmio},
               [](int, const ExitAction&, const std::string&) { FAIL() << "not expected"; });
  t.start();
  while (fake->runs.load() == 0) std::this_thread::yield();
  t.send(VcpuCommand::kPause);
  t.wait_for(VcpuRunState::kPaused);
  EXPECT_EQ(t.state(), VcpuRunState::kPaused);
  const int runs = fake->runs.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(fake->runs.load(), runs);  // a paused vCPU does not enter the guest
  t.send(VcpuCommand::kResume);
  t.wait_for(VcpuRunState::kRunning);
  while (fake->runs.load() == runs) std::this_thread::yield();
  t.send(VcpuCommand::kStop);
  t.wait_for(VcpuRunState::kStopped);
  t.join();
  EXPECT_EQ(t.state(), VcpuRunState::kStopped);
}

TEST(VcpuThread, PowerOffIsReported) {
  Fixture f;
  auto backend = std::make_unique<FakeBackend>();
  backend->script = {SystemEventExit{KVM_SYSTEM_EVENT_SHUTDOWN}};
  std::atomic<bool> powered_off{false};
  VcpuThread t(std::move(backend), ExitBuses{f.pio, f.mmio},
               [&](int, const ExitAction& a, const std::string&) {
                 powered_off = std::holds_alternative<ExitPowerOff>(a);
               });
  t.start();
  t.join();
  EXPECT_TRUE(powered_off);
}

}  // namespace
}  // namespace shoal

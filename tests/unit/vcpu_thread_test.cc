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
        if (script.empty() && pause_after_script) pause_after_script();
        return e;
      }
      // KVM_RUN of an AP waiting for INIT/SIPI returns (-EAGAIN) once an event came.
      if (mp_states.size() > 1) return InterruptedExit{};
    }
    while (!immediate_exit.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    return InterruptedExit{};
  }
  void request_immediate_exit() override { immediate_exit = true; }
  void clear_immediate_exit() override { immediate_exit = false; }
  std::string describe_state() const override { return "rip=0xfake"; }
  Result<VcpuState> save_state() override {
    VcpuState s;
    s.id = 7;
    s.regs.rax = saved_rax.load();
    std::lock_guard lock(mu);  // the state the next look would see, without taking it
    s.mp_state.mp_state = mp_states.empty() ? uint32_t{KVM_MP_STATE_RUNNABLE} : mp_states.front();
    return s;
  }
  Status restore_state(const VcpuState& s) override {
    saved_rax = s.regs.rax;
    return {};
  }
  void complete_pending_exit() override { ++completions; }
  Status enter_sink() override {
    ++sink_entries;
    return {};
  }
  Result<std::vector<uint8_t>> pending_interrupts() override { return std::vector<uint8_t>{0x41}; }
  // Each look takes the next of mp_states; the last one stays (none: a started vCPU).
  Result<uint32_t> mp_state() override {
    std::lock_guard lock(mu);
    if (mp_states.empty()) return uint32_t{KVM_MP_STATE_RUNNABLE};
    const uint32_t s = mp_states.front();
    if (mp_states.size() > 1) mp_states.pop_front();
    return s;
  }
  Result<uint8_t> startup_vector() override { return uint8_t{0x9a}; }
  std::deque<uint32_t> mp_states;
  std::atomic<int> sink_entries{0};
  std::atomic<uint64_t> saved_rax{0x1234};
  std::atomic<int> completions{0};
  std::function<void()> pause_after_script;  // called as the last scripted exit is returned

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

// A shadow's fd holds the sink's registers: a pause and a resume meant for the vCPUs running
// on its host (from a location table not current yet) must not run them as the guest.
TEST(VcpuThread, AShadowResumedWithoutLeavingTheSinkStaysInTheSink) {
  Fixture f;
  auto backend = std::make_unique<FakeBackend>();
  FakeBackend* fake = backend.get();
  VcpuThread t(std::move(backend), ExitBuses{f.pio, f.mmio},
               [](int, const ExitAction&, const std::string&) { FAIL() << "not expected"; });
  t.send(VcpuCommand::kSink);
  t.start();
  while (fake->sink_entries.load() == 0) std::this_thread::yield();
  EXPECT_EQ(t.state(), VcpuRunState::kSink);
  t.send(VcpuCommand::kPause);
  ASSERT_TRUE(t.wait_for(VcpuRunState::kPaused, std::chrono::seconds(5)));
  t.send(VcpuCommand::kResume);
  ASSERT_TRUE(t.wait_for(VcpuRunState::kSink, std::chrono::seconds(5)));
  EXPECT_EQ(fake->sink_entries.load(), 1);  // the same sink, not entered again
  // Leaving the sink restores a state and hands back what was pending; then it may run.
  VcpuState st;
  st.id = 7;
  st.regs.rax = 99;
  auto pending = t.leave_sink(st).get();
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(*pending, std::vector<uint8_t>{0x41});
  EXPECT_EQ(t.state(), VcpuRunState::kPaused);
  EXPECT_EQ(fake->saved_rax.load(), 99u);
  t.send(VcpuCommand::kResume);
  ASSERT_TRUE(t.wait_for(VcpuRunState::kRunning, std::chrono::seconds(5)));
  t.send(VcpuCommand::kStop);
  t.join();
}

// A vCPU whose fd shows `mp_states` one look after the other (the first at start()) becomes
// a shadow: from the start, or (`moved_away`) after running here, paused and saved, as the
// pod's mover parks a vCPU that leaves. Returns what the shadow reported before the sink.
std::vector<std::pair<ApicDelivery, uint8_t>> reports_before_the_sink(
    std::deque<uint32_t> mp_states, bool moved_away = false) {
  Fixture f;
  auto backend = std::make_unique<FakeBackend>();
  FakeBackend* fake = backend.get();
  fake->mp_states = std::move(mp_states);
  VcpuThread t(std::move(backend), ExitBuses{f.pio, f.mmio},
               [](int, const ExitAction&, const std::string&) { FAIL() << "not expected"; });
  std::mutex mu;
  std::vector<std::pair<ApicDelivery, uint8_t>> reports;
  t.set_sink([&](int id, ApicDelivery mode, uint8_t vector) {
    EXPECT_EQ(id, 7);
    std::lock_guard lock(mu);
    EXPECT_EQ(fake->sink_entries.load(), 0);  // reported before the sink
    reports.emplace_back(mode, vector);
  });
  if (moved_away) {
    t.start();
    while (fake->runs.load() == 0) std::this_thread::yield();  // KVM_RUN on the guest's fd
    t.send(VcpuCommand::kPause);
    EXPECT_TRUE(t.wait_for(VcpuRunState::kPaused, std::chrono::seconds(5)));
    EXPECT_TRUE(t.save().get().ok());
    t.send(VcpuCommand::kSink);
  } else {
    t.send(VcpuCommand::kSink);
    t.start();
  }
  while (fake->sink_entries.load() == 0) std::this_thread::yield();
  EXPECT_EQ(t.state(), VcpuRunState::kSink);
  t.send(VcpuCommand::kStop);
  t.join();
  std::lock_guard lock(mu);
  return reports;
}

const std::vector<std::pair<ApicDelivery, uint8_t>> kInitAndSipi = {{ApicDelivery::kInit, 0},
                                                                    {ApicDelivery::kStartup, 0x9a}};

// A shadow of an AP that was never started (Linux starts its APs with INIT and SIPI) reports
// both for the host that runs the AP, and only then becomes a sink: entered at once, the
// SIPI would start the guest's trampoline on this host.
TEST(VcpuThread, AShadowOfAnApNotStartedReportsItsInitAndSipiBeforeTheSink) {
  EXPECT_EQ(reports_before_the_sink({KVM_MP_STATE_UNINITIALIZED, KVM_MP_STATE_UNINITIALIZED,
                                     KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_INIT_RECEIVED,
                                     KVM_MP_STATE_RUNNABLE}),
            kInitAndSipi);
}

// The INIT and SIPI may both be in before the shadow's thread first looks (KVM takes both in
// one pass and the fd reads RUNNABLE): still an AP that was not started when the thread began,
// so both are reported.
TEST(VcpuThread, AShadowReportsAnInitAndSipiThatCameBeforeItsFirstLook) {
  EXPECT_EQ(reports_before_the_sink({KVM_MP_STATE_UNINITIALIZED, KVM_MP_STATE_RUNNABLE}),
            kInitAndSipi);
}

// An AP started here (its own KVM took its INIT and SIPI) has nothing to report as a shadow:
// a spurious INIT would reset it on its new host.
TEST(VcpuThread, AnApStartedHereBecomesAShadowWithoutReportingAStart) {
  EXPECT_TRUE(
      reports_before_the_sink({KVM_MP_STATE_UNINITIALIZED, KVM_MP_STATE_RUNNABLE}, true).empty());
}

// An AP that only waited in KVM_RUN here and moves away before its start: its shadow here
// reports the INIT and SIPI this host's BSP sends it later.
TEST(VcpuThread, AnApMovedAwayBeforeItsStartReportsItFromItsShadow) {
  EXPECT_EQ(reports_before_the_sink({KVM_MP_STATE_UNINITIALIZED, KVM_MP_STATE_UNINITIALIZED,
                                     KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE},
                                    true),
            kInitAndSipi);
}

// A shadow awaiting its AP's start that takes the vCPU back (leave_sink) with a started state,
// and is parked again before it runs, reports nothing: the state it took says started.
TEST(VcpuThread, AShadowThatTakesAStartedVcpuBackForgetsTheStartItAwaited) {
  Fixture f;
  auto backend = std::make_unique<FakeBackend>();
  FakeBackend* fake = backend.get();
  fake->mp_states = {KVM_MP_STATE_UNINITIALIZED, KVM_MP_STATE_UNINITIALIZED};
  VcpuThread t(std::move(backend), ExitBuses{f.pio, f.mmio},
               [](int, const ExitAction&, const std::string&) { FAIL() << "not expected"; });
  std::atomic<int> reports{0};
  t.set_sink([&](int, ApicDelivery, uint8_t) { ++reports; });
  t.send(VcpuCommand::kSink);
  t.start();  // awaits its start: waits in KVM_RUN
  VcpuState started;
  started.id = 7;
  started.mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
  ASSERT_TRUE(t.leave_sink(started).get().ok());
  {
    std::lock_guard lock(fake->mu);
    fake->mp_states = {KVM_MP_STATE_RUNNABLE};
  }
  t.send(VcpuCommand::kSink);
  while (fake->sink_entries.load() == 0) std::this_thread::yield();
  EXPECT_EQ(reports.load(), 0);
  t.send(VcpuCommand::kStop);
  t.join();
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

TEST(VcpuThread, PausingCompletesAPendingIoExitAndSaveRestoreRunOnThePausedVcpu) {
  Fixture f;
  auto backend = std::make_unique<FakeBackend>();
  FakeBackend* fake = backend.get();
  static uint8_t byte = 'x';
  backend->script = {IoExit{0x3f8, 1, true, 1, {&byte, 1}}};
  VcpuThread t(std::move(backend), ExitBuses{f.pio, f.mmio},
               [](int, const ExitAction&, const std::string&) { FAIL() << "not expected"; });
  t.start();
  while (fake->runs.load() < 2) std::this_thread::yield();  // past the I/O exit
  t.send(VcpuCommand::kPause);
  t.wait_for(VcpuRunState::kPaused);
  auto saved = t.save().get();
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  EXPECT_EQ(saved->regs.rax, 0x1234u);
  // The I/O exit was followed by another run (the one the pause kicked), so nothing was left
  // to complete; a pause straight after an I/O exit completes it first.
  EXPECT_EQ(fake->completions.load(), 0);
  saved->regs.rax = 0x5678;
  ASSERT_TRUE(t.restore(*saved).get().ok());
  EXPECT_EQ(fake->saved_rax.load(), 0x5678u);
  t.send(VcpuCommand::kStop);
  t.join();
  auto late = t.save().get();
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().message(), "the vcpu has stopped");
}

TEST(VcpuThread, APauseRightAfterAnIoExitCompletesItBeforeAnythingIsSaved) {
  Fixture f;
  auto backend = std::make_unique<FakeBackend>();
  FakeBackend* fake = backend.get();
  static uint8_t byte = 'x';
  // The pause is queued before the thread starts: its first exit is the I/O one, and the
  // command is seen right after it is handled.
  backend->script = {IoExit{0x3f8, 1, true, 1, {&byte, 1}}};
  VcpuThread t(std::move(backend), ExitBuses{f.pio, f.mmio},
               [](int, const ExitAction&, const std::string&) { FAIL() << "not expected"; });
  fake->pause_after_script = [&] { t.send(VcpuCommand::kPause); };
  t.start();
  t.wait_for(VcpuRunState::kPaused);
  ASSERT_TRUE(t.save().get().ok());
  EXPECT_EQ(fake->completions.load(), 1);
  t.send(VcpuCommand::kStop);
  t.join();
}

}  // namespace
}  // namespace shoal

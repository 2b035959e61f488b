#include "vcpu/vcpu_thread.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>

#include "arch/interrupt_sink.hpp"
#include "shoal/clock.hpp"

namespace shoal {
namespace {

int kick_signal() {
  return SIGRTMIN;
}

void on_kick(int) {}
}  // namespace

void install_kick_signal_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = on_kick;
    // SA_RESTART keeps the vCPU's other syscalls (console writes) from failing with EINTR;
    // KVM_RUN itself still returns EINTR, which is what the kick is for.
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(kick_signal(), &sa, nullptr);
  });
}

VcpuRunState next_state(VcpuRunState state, VcpuCommand command) {
  if (state == VcpuRunState::kStopped) return VcpuRunState::kStopped;
  switch (command) {
    case VcpuCommand::kPause:
      return VcpuRunState::kPaused;
    case VcpuCommand::kResume:
      return VcpuRunState::kRunning;
    case VcpuCommand::kStop:
      return VcpuRunState::kStopped;
    case VcpuCommand::kSink:
      return VcpuRunState::kSink;
  }
  return state;
}

const char* state_name(VcpuRunState state) {
  switch (state) {
    case VcpuRunState::kRunning:
      return "running";
    case VcpuRunState::kPaused:
      return "paused";
    case VcpuRunState::kStopped:
      return "stopped";
    case VcpuRunState::kSink:
      return "interrupt sink";
  }
  return "?";
}

VcpuThread::VcpuThread(std::unique_ptr<VcpuBackend> backend, ExitBuses buses, Finished finished)
    : backend_(std::move(backend)), buses_(buses), finished_(std::move(finished)) {}

VcpuThread::~VcpuThread() {
  if (started_) {
    send(VcpuCommand::kStop);
    join();
  }
}

void VcpuThread::set_sink(SinkVector sink) {
  sink_ = std::move(sink);
}

void VcpuThread::start() {
  install_kick_signal_handler();
  // An AP nobody has started yet: read here, before the thread runs and before the pod can
  // have sent it anything. Read by its first KVM_RUN or KVM_GET_MP_STATE instead, an INIT and
  // SIPI that arrived first would already have made it RUNNABLE (KVM takes both pending
  // events in one pass), and a shadow would enter the sink without reporting them.
  if (auto mp = backend_->mp_state(); mp && *mp == KVM_MP_STATE_UNINITIALIZED)
    awaiting_start_ = true;
  std::unique_lock lock(mu_);
  thread_ = std::thread([this] { loop(); });
  handle_ = thread_.native_handle();
  started_ = true;
}

void VcpuThread::send(VcpuCommand command) {
  {
    std::lock_guard lock(mu_);
    commands_.push_back(command);
    if (!started_ || state_ == VcpuRunState::kStopped) return;
  }
  cv_.notify_all();
  // Order matters: command first, then the flag, then the signal (see loop()).
  backend_->request_immediate_exit();
  pthread_kill(handle_, kick_signal());
}

void VcpuThread::post(Job job) {
  {
    std::unique_lock lock(mu_);
    if (state_ == VcpuRunState::kStopped) {
      lock.unlock();  // the job may ask this thread's state (a move's save_then does)
      job(nullptr);
      return;
    }
    jobs_.push_back(std::move(job));
    if (!started_) return;
  }
  cv_.notify_all();
  backend_->request_immediate_exit();
  pthread_kill(handle_, kick_signal());
}

std::future<Result<VcpuState>> VcpuThread::save() {
  auto reply = std::make_shared<std::promise<Result<VcpuState>>>();
  auto f = reply->get_future();
  save_then([reply](Result<VcpuState> s) { reply->set_value(std::move(s)); });
  return f;
}

void VcpuThread::save_then(std::function<void(Result<VcpuState>)> then) {
  post([this, then = std::move(then)](VcpuBackend* b) {
    if (b == nullptr) return then(Error("the vcpu has stopped"));
    save_began_ns_ = monotonic_ns();
    auto s = b->save_state();
    // A vCPU saved to move away parks its fd as a shadow next: if its AP was not started yet
    // (it only waited in KVM_RUN here), the shadow must report the INIT and SIPI to come.
    if (s) note_start_state(s->mp_state.mp_state);
    then(std::move(s));
  });
}

std::future<Status> VcpuThread::restore(VcpuState state) {
  auto reply = std::make_shared<std::promise<Status>>();
  auto f = reply->get_future();
  post([this, reply, s = std::move(state)](VcpuBackend* b) {
    if (b == nullptr) return reply->set_value(Error("the vcpu has stopped"));
    Status r = b->restore_state(s);
    if (r.ok()) note_start_state(s.mp_state.mp_state);
    reply->set_value(std::move(r));
  });
  return f;
}

std::future<Result<std::vector<uint8_t>>> VcpuThread::leave_sink(VcpuState state) {
  auto reply = std::make_shared<std::promise<Result<std::vector<uint8_t>>>>();
  auto f = reply->get_future();
  leave_sink_then(std::move(state), false, nullptr, [reply](Result<std::vector<uint8_t>> pending) {
    reply->set_value(std::move(pending));
  });
  return f;
}

void VcpuThread::leave_sink_then(VcpuState state, bool resume, std::function<Status()> ready,
                                 SinkLeft then) {
  post([this, resume, s = std::move(state), ready = std::move(ready),
        then = std::move(then)](VcpuBackend* b) {
    if (b == nullptr) return then(Error("the vcpu has stopped"));
    if (ready)
      if (Status r = ready(); !r.ok()) return then(r.error());
    // Read before the restore overwrites the LAPIC. An interrupt sent to this vCPU by
    // another vCPU of this host between the two would be lost: the caller pauses them.
    auto pending = b->pending_interrupts();
    if (!pending) return then(pending.error());
    if (Status r = b->restore_state(s); !r.ok()) return then(r.error());
    note_start_state(s.mp_state.mp_state);
    sink_entered_ = false;
    {
      std::lock_guard lock(mu_);
      state_ = VcpuRunState::kPaused;
    }
    then(std::move(*pending));
    if (!resume) return;
    // The loop applies the commands that came meanwhile (a stop, a pause) on top of this.
    std::lock_guard lock(mu_);
    state_ = next_state(state_, VcpuCommand::kResume);
  });
}

void VcpuThread::note_start_state(uint32_t mp_state) {
  // Not started yet (UNINITIALIZED), or INIT taken but no SIPI yet: a shadow of this fd reports
  // what is still to come (not the INIT already taken); otherwise it has nothing to report.
  awaiting_start_ =
      mp_state == KVM_MP_STATE_UNINITIALIZED || mp_state == KVM_MP_STATE_INIT_RECEIVED;
  init_reported_ = mp_state == KVM_MP_STATE_INIT_RECEIVED;
}

void VcpuThread::run_jobs(std::deque<Job>& jobs) {
  if (exit_pending_) {
    backend_->complete_pending_exit();
    exit_pending_ = false;
  }
  for (Job& j : jobs) j(backend_.get());
}

VcpuRunState VcpuThread::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

void VcpuThread::wait_for(VcpuRunState state) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return state_ == state || state_ == VcpuRunState::kStopped; });
}

bool VcpuThread::wait_for(VcpuRunState state, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout,
                      [&] { return state_ == state || state_ == VcpuRunState::kStopped; });
}

void VcpuThread::join() {
  if (thread_.joinable()) thread_.join();
}

void VcpuThread::apply_commands_locked() {
  while (!commands_.empty()) {
    VcpuRunState next = next_state(state_, commands_.front());
    // A shadow's fd holds the sink's registers, not a guest's: resuming it resumes the sink
    // (say, a pause and resume of "this host's vCPUs" from a location table not current yet).
    if (next == VcpuRunState::kRunning && sink_entered_) next = VcpuRunState::kSink;
    state_ = next;
    commands_.pop_front();
  }
}

void VcpuThread::loop() {
  const std::string name = "vcpu" + std::to_string(backend_->id());
  pthread_setname_np(pthread_self(), name.c_str());
  tid_.store(static_cast<uint32_t>(gettid()), std::memory_order_relaxed);
  for (;;) {
    std::deque<Job> jobs;
    bool sinking = false;  // read with the commands, not under a second lock per run
    {
      std::unique_lock lock(mu_);
      for (;;) {
        apply_commands_locked();
        cv_.notify_all();
        if (state_ == VcpuRunState::kStopped) break;
        if (!jobs_.empty()) {
          jobs.swap(jobs_);
          break;
        }
        if (state_ != VcpuRunState::kPaused) break;
        if (exit_pending_) {
          // Paused means consistent: KVM completes the last I/O exit before anyone looks.
          lock.unlock();
          backend_->complete_pending_exit();
          exit_pending_ = false;
          lock.lock();
          continue;
        }
        cv_.wait(lock, [&] { return !commands_.empty() || !jobs_.empty(); });
      }
      if (state_ == VcpuRunState::kStopped) {
        jobs.insert(jobs.end(), std::make_move_iterator(jobs_.begin()),
                    std::make_move_iterator(jobs_.end()));
        jobs_.clear();
        lock.unlock();
        for (Job& j : jobs) j(nullptr);
        return;
      }
      sinking = state_ == VcpuRunState::kSink;
    }
    if (!jobs.empty()) {
      run_jobs(jobs);
      continue;
    }
    if (sinking && !sink_entered_) {
      auto step = shadow_start_step();
      if (!step) return finish(ExitFail{step.error().message()});
      if (*step == StartStep::kPoll) {
        // The SIPI follows the INIT within microseconds to milliseconds (Linux sends it at
        // once on current CPUs); commands end the wait early.
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::microseconds(200),
                     [&] { return !commands_.empty() || !jobs_.empty(); });
        continue;
      }
      if (*step == StartStep::kEnterSink) {
        if (Status s = backend_->enter_sink(); !s.ok())
          return finish(ExitFail{s.error().message()});
        sink_entered_ = true;
      }
    }
    VcpuExit exit = backend_->run();
    ++exits_;
    exit_pending_ = false;
    if (std::holds_alternative<InterruptedExit>(exit)) {
      // Cleared before the command check above runs again: a kick that lands after this
      // point either finds its command in the queue or makes the next run() return at once.
      backend_->clear_immediate_exit();
      continue;
    }
    if (sinking) {
      if (!handle_sink_exit(exit)) return;
      exit_pending_ = true;
      continue;
    }
    ExitAction action = handle_exit(exit, buses_);
    if (std::holds_alternative<ExitContinue>(action)) {
      exit_pending_ =
          std::holds_alternative<IoExit>(exit) || std::holds_alternative<MmioExit>(exit);
      continue;
    }
    return finish(action);
  }
}

bool VcpuThread::handle_sink_exit(const VcpuExit& exit) {
  // Only for an error: a report is on the interrupt path, which allocates nothing.
  auto what = [&] { return "vcpu " + std::to_string(backend_->id()) + ": interrupt sink: "; };
  const auto* report = std::get_if<MmioExit>(&exit);
  if (report == nullptr || !report->write || report->address < kSinkReportGpa ||
      report->address >= kSinkReportGpa + 256) {
    finish(ExitFail{what() + "unexpected " + describe_exit(exit)});
    return false;
  }
  const auto vector = static_cast<uint8_t>(report->address - kSinkReportGpa);
  // Vectors below 16 other than the NMI's can only be exceptions, a fault in the sink itself
  // (16-31 are exceptions too, but a guest may send them, and the sink raises none of them).
  if (vector < 16 && vector != kNmiVector) {
    finish(ExitFail{what() + "exception " + std::to_string(vector)});
    return false;
  }
  if (vector == kNmiVector) {
    if (Status s = backend_->unblock_nmi(); !s.ok()) {
      finish(ExitFail{what() + s.error().message()});
      return false;
    }
  }
  if (sink_) sink_(backend_->id(), sink_delivery(vector), vector);
  return true;
}

Result<VcpuThread::StartStep> VcpuThread::shadow_start_step() {
  if (!awaiting_start_) return StartStep::kEnterSink;  // a started vCPU's shadow
  auto mp = backend_->mp_state();
  if (!mp) return mp.error();
  const int id = backend_->id();
  if (*mp == KVM_MP_STATE_UNINITIALIZED) return StartStep::kWaitInKvm;
  if (!init_reported_) {
    if (sink_) sink_(id, ApicDelivery::kInit, 0);
    init_reported_ = true;
  }
  if (*mp == KVM_MP_STATE_INIT_RECEIVED) return StartStep::kPoll;
  // RUNNABLE: the SIPI came (a second one, as Linux sends, finds the vCPU running and KVM
  // drops it, on hardware too).
  auto vector = backend_->startup_vector();
  if (!vector) return vector.error();
  if (sink_) sink_(id, ApicDelivery::kStartup, *vector);
  awaiting_start_ = init_reported_ = false;
  return StartStep::kEnterSink;
}

void VcpuThread::finish(const ExitAction& action) {
  {
    std::deque<Job> orphans;
    {
      std::lock_guard lock(mu_);
      state_ = VcpuRunState::kStopped;
      orphans.swap(jobs_);
    }
    cv_.notify_all();
    for (Job& j : orphans) j(nullptr);
  }
  const std::string cpu_state =
      std::holds_alternative<ExitFail>(action) ? backend_->describe_state() : std::string();
  if (finished_) finished_(backend_->id(), action, cpu_state);
}

}  // namespace shoal

// One thread per vCPU, a small state machine (running / paused / stopped) driven by commands.
// A command is posted, then the thread is kicked out of KVM_RUN with immediate_exit + a signal.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "kvm/kvm.hpp"
#include "kvm/vcpu_fd.hpp"
#include "kvm/vcpu_state.hpp"
#include "vcpu/exit_handler.hpp"
#include "vcpu/vcpu_exit.hpp"

namespace shoal {

// The narrow hypervisor interface the vCPU loop needs; tests and later the migration code
// drive the loop through a fake one.
class VcpuBackend {
 public:
  virtual ~VcpuBackend() = default;
  virtual int id() const = 0;
  // Enters the guest once; InterruptedExit when kicked.
  virtual VcpuExit run() = 0;
  // Called from other threads (and async-signal-safe): make the next or current run() return.
  virtual void request_immediate_exit() = 0;
  virtual void clear_immediate_exit() = 0;
  // Registers worth printing next to an error ("rip=0x100200 cr0=0x80000011 ..."); called on
  // the vCPU's own thread.
  virtual std::string describe_state() const = 0;
  // Everything the hypervisor holds for this vCPU, and back; on the vCPU's own thread, between
  // runs, after complete_pending_exit.
  virtual Result<VcpuState> save_state() = 0;
  virtual Status restore_state(const VcpuState& state) = 0;
  // KVM finishes an I/O or MMIO exit (an IN's data into RAX, say) only on the next KVM_RUN:
  // until then its state is inconsistent, and the KVM API says to re-enter first. This
  // re-enters with immediate_exit set, so KVM completes the exit and returns at once.
  virtual void complete_pending_exit() = 0;
  // The interrupt sink (arch/interrupt_sink.hpp), for a vCPU whose state went elsewhere: point
  // the fd at the sink's code; and, leaving it, the vectors its LAPIC still holds (the IRR,
  // and 2 for a pending NMI). Only real KVM vCPUs have one.
  virtual Status enter_sink() { return Error("this vCPU has no interrupt sink"); }
  virtual Result<std::vector<uint8_t>> pending_interrupts() {
    return Error("this vCPU has no interrupt sink");
  }
  // The sink took an NMI: KVM blocks the next until an IRET, which the sink never runs.
  virtual Status unblock_nmi() { return Error("this vCPU has no interrupt sink"); }
  // KVM_GET_MP_STATE, which first takes an INIT or SIPI that arrived (KVM_MP_STATE_*); and
  // the vector of the SIPI that started the vCPU (its CS selector is vector << 8). For a
  // shadow of an AP that was never started (docs/interrupts.md, "INIT and SIPI").
  virtual Result<uint32_t> mp_state() { return Error("this vCPU has no interrupt sink"); }
  virtual Result<uint8_t> startup_vector() { return Error("this vCPU has no interrupt sink"); }
};

class KvmVcpuBackend : public VcpuBackend {
 public:
  // `msr_indices`: the MSRs save_state() includes (Kvm::msr_index_list()).
  KvmVcpuBackend(VcpuFd vcpu, size_t run_size, std::vector<uint32_t> msr_indices)
      : vcpu_(std::move(vcpu)), run_size_(run_size), msr_indices_(std::move(msr_indices)) {}
  int id() const override { return vcpu_.id(); }
  VcpuExit run() override;
  void request_immediate_exit() override;
  void clear_immediate_exit() override;
  std::string describe_state() const override;
  Result<VcpuState> save_state() override;
  Status restore_state(const VcpuState& state) override;
  void complete_pending_exit() override;
  Status enter_sink() override;
  Result<std::vector<uint8_t>> pending_interrupts() override;
  Status unblock_nmi() override;
  Result<uint32_t> mp_state() override;
  Result<uint8_t> startup_vector() override;
  const VcpuFd& fd() const { return vcpu_; }

 private:
  VcpuFd vcpu_;
  size_t run_size_;
  std::vector<uint32_t> msr_indices_;
  // Since the last save, if no guest code ran in the fd (the sink's own code keeps them).
  std::optional<VcpuFd::Held> held_;
  bool in_sink_ = false;
};

// kSink: the vCPU runs elsewhere and this fd runs the interrupt sink, reporting each
// interrupt it takes (a pod member's shadow of another host's vCPU; docs/interrupts.md).
enum class VcpuRunState { kRunning, kPaused, kStopped, kSink };
enum class VcpuCommand { kPause, kResume, kStop, kSink };

// The transition table: stopped is final; otherwise the command decides.
VcpuRunState next_state(VcpuRunState state, VcpuCommand command);
const char* state_name(VcpuRunState state);

class VcpuThread {
 public:
  // Called once, on the vCPU thread, when the guest powers off or the vCPU fails; on a
  // failure `cpu_state` holds describe_state().
  using Finished =
      std::function<void(int vcpu_id, const ExitAction& action, const std::string& cpu_state)>;

  VcpuThread(std::unique_ptr<VcpuBackend> backend, ExitBuses buses, Finished finished);
  VcpuThread(const VcpuThread&) = delete;
  VcpuThread& operator=(const VcpuThread&) = delete;
  ~VcpuThread();  // stops and joins

  // Where the interrupt sink reports each vector it takes (kFixed, or kNmi and 2), and a
  // shadow of an AP not started yet its INIT and SIPI (on this vCPU's thread); before start().
  using SinkVector = std::function<void(int vcpu_id, ApicDelivery mode, uint8_t vector)>;
  void set_sink(SinkVector sink);

  void start();
  void send(VcpuCommand command);
  // Leaves the interrupt sink: restores `state` into the fd and leaves the vCPU paused. The
  // answer holds the vectors that were still pending in the sink's LAPIC (lost otherwise: the
  // restore overwrites it), for the caller to send again once the vCPU runs here.
  std::future<Result<std::vector<uint8_t>>> leave_sink(VcpuState state);
  // The same on the vCPU's thread from start to end, for a move: `ready` first (it may wait,
  // for the other vCPUs of this host to pause), then the pending read and the restore, then
  // `then` with the vectors (or the first error), and then the vCPU runs if `resume` (and no
  // error came): no other thread wakes between the state's arrival and the guest.
  using SinkLeft = std::function<void(Result<std::vector<uint8_t>>)>;
  void leave_sink_then(VcpuState state, bool resume, std::function<Status()> ready, SinkLeft then);
  // Runs on the vCPU's own thread between two runs, after any pending exit is completed; the
  // vCPU keeps the state it was in (pause it first for a consistent machine). Answered with an
  // error if the vCPU stops first.
  std::future<Result<VcpuState>> save();
  // The same, handing the state to `then` on the vCPU's thread (an error if it stops first):
  // a move sends it on from there, without a wake-up of the asking thread in between.
  void save_then(std::function<void(Result<VcpuState>)> then);
  // In a save_then continuation (the vCPU's thread): when its save began, on the monotonic
  // clock: the moment the vCPU stopped running guest code for it.
  uint64_t save_began_ns() const { return save_began_ns_; }
  std::future<Status> restore(VcpuState state);
  VcpuRunState state() const;
  // Blocks until the thread has reached `state` (a paused vCPU is outside KVM_RUN).
  void wait_for(VcpuRunState state);
  // The same, giving up after `timeout`: false if the thread is in neither state by then.
  bool wait_for(VcpuRunState state, std::chrono::milliseconds timeout);
  void join();
  uint64_t exit_count() const { return exits_; }
  // The thread's kernel id once it runs (0 before): what userfaultfd names for its faults.
  uint32_t tid() const { return tid_.load(std::memory_order_relaxed); }
  VcpuBackend& backend() { return *backend_; }

 private:
  void loop();
  void apply_commands_locked();
  // A job gets the backend, or nullptr when the vCPU stopped before it could run.
  using Job = std::function<void(VcpuBackend*)>;
  void post(Job job);
  void run_jobs(std::deque<Job>& jobs);
  // One exit of the sink's code; false when the vCPU must stop (reported through finished_).
  bool handle_sink_exit(const VcpuExit& exit);
  // A shadow about to enter the sink whose AP was never started waits for its INIT and SIPI
  // first, and reports them: KVM_RUN sleeps until an event (kWaitInKvm) while the fd is
  // UNINITIALIZED; after the INIT the thread polls (kPoll), as KVM_RUN would take the SIPI and
  // run the guest's trampoline here; after the SIPI it enters the sink (kEnterSink).
  enum class StartStep { kEnterSink, kWaitInKvm, kPoll };
  Result<StartStep> shadow_start_step();
  // vCPU thread: sets awaiting_start_ and init_reported_ from a state saved or restored here.
  void note_start_state(uint32_t mp_state);
  void finish(const ExitAction& action);

  std::unique_ptr<VcpuBackend> backend_;
  ExitBuses buses_;
  Finished finished_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<VcpuCommand> commands_;
  std::deque<Job> jobs_;
  bool exit_pending_ = false;  // vCPU thread only: the last exit needs completing (see backend)
  bool sink_entered_ = false;  // vCPU thread only: the fd runs the sink's code
  // vCPU thread only (and start(), before the thread): an AP not started yet, whose shadow
  // reports its INIT and SIPI before entering the sink; whether its INIT has been reported.
  // Set at start() and from every state saved or restored (a vCPU leaving is saved before
  // its fd becomes a shadow), not in the run loop.
  bool awaiting_start_ = false, init_reported_ = false;
  SinkVector sink_;
  VcpuRunState state_ = VcpuRunState::kRunning;
  std::thread thread_;
  pthread_t handle_{};
  bool started_ = false;
  uint64_t exits_ = 0;
  uint64_t save_began_ns_ = 0;  // vCPU thread only
  std::atomic<uint32_t> tid_{0};
};

// Installs the no-op handler of the kick signal; idempotent.
void install_kick_signal_handler();

}  // namespace shoal

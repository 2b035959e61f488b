// One guest on this host: the VM, its RAM, devices and vCPU threads, from boot to exit.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "arch/boot_plan.hpp"
#include "arch/guest_ram.hpp"
#include "devices/console_input.hpp"
#include "devices/io_bus.hpp"
#include "devices/uart16550.hpp"
#include "kvm/kvm.hpp"
#include "machine/machine_core.hpp"
#include "machine/run_config.hpp"
#include "memory/memory_manager.hpp"
#include "shoal/first_outcome.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"
#include "vcpu/vcpu_thread.hpp"

namespace shoal {

// A paused machine, as values: enough, with its RAM, to resume it in a fresh VM.
struct MachineState {
  VmState vm;
  std::vector<VcpuState> vcpus;
  std::vector<uint8_t> port_devices;  // IoBus::save_state of the port bus
};

class Machine {
 public:
  static Result<std::unique_ptr<Machine>> create(Kvm kvm, const RunConfig& config);
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;
  ~Machine();

  // Runs the guest until it exits; its exit code (0 on power-off/reset), or an error.
  Result<int> run();
  const BootPlan& plan() const { return plan_; }
  const GuestRam& ram() const { return core_->ram(); }

  // Pauses every vCPU (each completes a pending exit first) and saves them, the VM's in-kernel
  // devices and clock, and the port devices. The machine stays paused: resume() or stop().
  Result<MachineState> pause_and_save();
  void resume();
  // Ends run() with exit code 0, as a power-off would.
  void stop();
  // Before run(), on a machine create()d for the same guest: puts `state` and the RAM of
  // `source` in place of the fresh boot, so that run() continues where the source paused.
  Status restore(const MachineState& state, const GuestRam& source);
  // After run(): whether the guest ended by asking for a reset rather than a power-off.
  bool reset_requested() const { return outcome_.decided() && outcome_.get().reset; }

 private:
  explicit Machine(std::unique_ptr<MachineCore> core) : core_(std::move(core)) {}
  Status build_devices(const RunConfig& config);
  void on_vcpu_finished(int id, const ExitAction& action, const std::string& state);
  void finish(std::optional<int> code, std::optional<Error> error, bool reset = false);
  void write_console(uint8_t byte);

  std::unique_ptr<MachineCore> core_;  // VM, RAM, buses, vCPUs
  std::unique_ptr<GuestMemoryManager> memory_;
  bool print_stats_ = false;
  uint64_t started_ns_ = 0;
  std::shared_ptr<Uart16550> uart_;
  std::unique_ptr<ConsoleInput> console_input_;  // stdin -> UART with --serial stdio
  UniqueFd console_file_;
  int console_fd_ = 1;
  BootPlan plan_;
  std::vector<std::future<Status>> restore_pending_;  // restore(): answered as the vCPUs start

  struct Outcome {
    std::optional<int> code;  // the guest's exit code
    std::optional<Error> error;
    bool reset = false;  // the guest asked for a reset, not a power-off
  };
  FirstOutcome<Outcome> outcome_;
};

}  // namespace shoal

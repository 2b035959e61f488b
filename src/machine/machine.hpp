// One guest on this host: the VM, its RAM, devices and vCPU threads, from boot to exit.
#pragma once

#include <atomic>
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
#include "machine/api_server.hpp"
#include "machine/machine_core.hpp"
#include "machine/machine_state.hpp"
#include "machine/replica_runner.hpp"
#include "machine/run_config.hpp"
#include "memory/memory_manager.hpp"
#include "memory/snapshot_writer.hpp"
#include "shoal/first_outcome.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"
#include "vcpu/vcpu_thread.hpp"

namespace shoal {

// One guest address in every KVM slot that holds a page of the snapshot (stored or zero): those
// slots exist before the vCPUs run, since page walks and instruction fetches cannot take the
// lazy slot path (memory/ram_slots.hpp).
std::vector<uint64_t> snapshot_slot_gpas(const SnapshotFile& file,
                                         const std::vector<RamRegion>& regions);

// Likewise for a raw memory image (--restore-image, a replica's memory.img): its data extents.
std::vector<uint64_t> image_slot_gpas(const std::string& image,
                                      const std::vector<RamRegion>& regions);

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
  // Writes a snapshot file of the guest (memory/snapshot_format.hpp): pauses it unless it is
  // paused already, saves, and resumes it unless `stay_paused` or it was paused before. With
  // `working_set_ms`, the guest first runs that long while the pages it touches are recorded
  // (memory/working_set.hpp); they are stored first.
  Result<SnapshotWriteStats> snapshot(const std::string& path, bool stay_paused,
                                      uint32_t working_set_ms = 0);
  // One control API request (machine/api_server.hpp), on the API thread.
  ApiReply handle_api(const ApiRequest& request);
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
  // create() for --restore: the machine's state and RAM come from the snapshot file.
  Status restore_from_file(const RunConfig& config);
  Status queue_restore(const MachineState& state);
  Status start_replica(const RunConfig& config);
  // One checkpoint of --replica, on the replica's thread.
  Status replica_checkpoint();
  Status create_vcpus(const RunConfig& config);
  Status pause_vcpus();
  Result<MachineState> save_paused();
  std::string metrics() const;
  void on_vcpu_finished(int id, const ExitAction& action, const std::string& state);
  void finish(std::optional<int> code, std::optional<Error> error, bool reset = false);
  void write_console(uint8_t byte);

  Status open_virtio_devices(const RunConfig& config);
  void stop_devices();

  std::unique_ptr<MachineCore> core_;  // VM, RAM, buses, vCPUs
  std::unique_ptr<GuestMemoryManager> memory_;
  // --disk, then --net, then --channel: opened (and checked) before anything else, put on the MMIO
  // bus in this order by build_devices(). Their workers use guest memory, so they stop before the
  // memory stack does.
  std::vector<std::unique_ptr<VirtioDevice>> virtio_devices_;
  std::vector<std::shared_ptr<VirtioMmio>> virtio_;
  bool print_stats_ = false;
  uint64_t started_ns_ = 0;
  std::shared_ptr<Uart16550> uart_;
  std::unique_ptr<ConsoleInput> console_input_;  // stdin -> UART with --serial stdio
  UniqueFd console_file_;
  int console_fd_ = 1;
  BootPlan plan_;
  std::vector<std::future<Status>> restore_pending_;  // restore(): answered as the vCPUs start
  std::unique_ptr<ApiServer> api_;                    // --api-socket; stopped first in run()
  std::unique_ptr<ReplicaRunner> replica_;            // --replica; stopped right after api_
  std::mutex control_mu_;                             // pause/resume/snapshot, one at a time
  bool paused_ = false;                               // by the API or a snapshot
  std::atomic<bool> vcpus_started_{false};
  uint64_t run_started_ns_ = 0;
  uint64_t snapshots_ = 0;

  struct Outcome {
    std::optional<int> code;  // the guest's exit code
    std::optional<Error> error;
    bool reset = false;  // the guest asked for a reset, not a power-off
  };
  FirstOutcome<Outcome> outcome_;
};

}  // namespace shoal

#include "machine/machine.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "arch/kernel_loader.hpp"
#include "devices/platform_devices.hpp"
#include "devices/simple_devices.hpp"
#include "devices/virtio_devices.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

namespace shoal {

Machine::~Machine() {
  // The threads that pause and save the machine first (run() stops them too; a machine whose
  // create() failed half-way never ran).
  if (api_) api_->stop();
  if (replica_) replica_->stop();
  core_->stop_vcpus();
  stop_devices();   // their workers may wait on guest-memory faults: before the server goes
  memory_.reset();  // fault server and pool, before the RAM mapping goes
}

void Machine::stop_devices() {
  for (auto& t : virtio_) t->stop();
}

Status Machine::open_virtio_devices(const RunConfig& config) {
  // With --restore or --replica, or more than the slots, the command line was refused already.
  auto devices =
      shoal::open_virtio_devices({config.disks, config.nets, config.channel}, config.vcpus);
  if (!devices) return devices.error();
  virtio_devices_ = std::move(*devices);
  return {};
}

Result<std::unique_ptr<Machine>> Machine::create(Kvm kvm, const RunConfig& config) {
  // Start-up, step by step at debug level (bench/startup explains the figures).
  auto step = [&](const char* what) {
    if (config.started_ns != 0)
      log::debug("startup: {} {:.2f} ms after main()", what,
                 static_cast<double>(monotonic_ns() - config.started_ns) / 1e6);
  };
  step("creating the VM");
  // A restore's slots before the irqchip (MachineCore::create says why).
  std::vector<uint64_t> early;
  if (config.memory_options.restore_from) {
    const auto layout = GuestRam::layout(config.memory);
    early = snapshot_slot_gpas(*config.memory_options.restore_from, layout);
    if (!config.memory_options.restore_image.empty()) {
      const auto image = image_slot_gpas(config.memory_options.restore_image, layout);
      early.insert(early.end(), image.begin(), image.end());
    }
  }
  auto core = MachineCore::create(std::move(kvm), config.memory, {.early_gpas = early});
  if (!core) return core.error();
  std::unique_ptr<Machine> m(new Machine(std::move(*core)));
  SHOAL_TRY(m->open_virtio_devices(config), "");
  m->print_stats_ = config.print_stats;
  m->started_ns_ = config.started_ns;
  Machine* self = m.get();
  GuestRam& ram = m->core_->ram();
  // Before anything writes to guest RAM: from here on even the loader's writes are first
  // touches served by the fault server.
  MemoryOptions memory_options = config.memory_options;
  if (memory_options.restore_from) {
    // The background load's progress: a line every 500 ms on a terminal, the end in any case.
    memory_options.restore_progress = [tty = isatty(STDERR_FILENO) == 1,
                                       file = memory_options.restore_from, t0 = monotonic_ns()](
                                          uint64_t loaded, uint64_t blocks, bool done) {
      const double ms = static_cast<double>(monotonic_ns() - t0) / 1e6;
      if (done)
        log::info("restore: all {} blocks of {} in after {:.0f} ms", blocks, file->path(), ms);
      else if (tty)
        log::info("restore: {}% of {} in ({} of {} blocks, {:.0f} ms)", loaded * 100 / blocks,
                  file->path(), loaded, blocks, ms);
    };
  }
  auto memory = GuestMemoryManager::create(ram, memory_options, [self](const Error& e) {
    self->finish(std::nullopt, e.context("guest memory"));
  });
  if (!memory) return memory.error();
  m->memory_ = std::move(*memory);
  step("guest memory served");

  if (config.memory_options.restore_from) {
    SHOAL_TRY(m->restore_from_file(config),
              "restore from " + config.memory_options.restore_from->path());
    step("restored");
    return m;
  }
  auto plan = load_guest_files(ram, config.kernel, config.initrd, config.cmdline, config.vcpus,
                               static_cast<uint32_t>(m->virtio_devices_.size()));
  if (!plan) return plan.error();
  m->plan_ = std::move(*plan);
  step("guest loaded");
  log::info("kernel {}: {}; {} of RAM, {} vCPU{}", config.kernel, m->plan_.description,
            format_size(config.memory), config.vcpus, config.vcpus == 1 ? "" : "s");
  for (const E820Entry& e : m->plan_.e820) log::debug("e820: {}", format_e820(e));

  SHOAL_TRY(m->build_devices(config), "devices");
  // Guest RAM reaches KVM one 1 GiB slot at a time (see ram_slots.hpp): now the slots holding
  // what the loader wrote, the rest on first access.
  SHOAL_TRY(m->core_->map_for_boot(), "");
  step("devices and RAM slots");
  SHOAL_TRY(m->create_vcpus(config), "");
  SHOAL_TRY(m->start_replica(config), "");
  return m;
}

Status Machine::create_vcpus(const RunConfig& config) {
  std::vector<int> ids(static_cast<size_t>(config.vcpus));
  for (int i = 0; i < config.vcpus; ++i) ids[static_cast<size_t>(i)] = i;
  SHOAL_TRY(core_->create_vcpus(ids, config.vcpus, plan_,
                                [this](int id, const ExitAction& a, const std::string& st) {
                                  on_vcpu_finished(id, a, st);
                                }),
            "");
  if (!config.api_socket.empty()) {
    auto api =
        ApiServer::start(config.api_socket, [this](const ApiRequest& r) { return handle_api(r); });
    if (!api) return api.error();
    api_ = std::move(*api);
  }
  return {};
}

Result<MachineState> Machine::pause_and_save() {
  SHOAL_TRY(pause_vcpus(), "save");
  return save_paused();
}

Result<MachineState> Machine::save_paused() {
  if (!virtio_.empty()) return Error("save: virtio devices (--disk) do not save their state yet");
  MachineState s;
  for (auto& v : core_->vcpus()) {
    auto vcpu = v->save().get();
    if (!vcpu) return vcpu.error().context("save");
    s.vcpus.push_back(std::move(*vcpu));
  }
  auto vm = core_->vm().save_state();
  if (!vm) return vm.error().context("save VM");
  s.vm = *vm;
  s.port_devices = core_->pio().save_state();
  s.cpuid = core_->cpuid_base();
  return s;
}

void Machine::resume() {
  core_->command_vcpus(VcpuCommand::kResume);
}

void Machine::stop() {
  finish(0, std::nullopt);
}

Status Machine::restore(const MachineState& state, const GuestRam& source) {
  if (state.vcpus.size() != core_->vcpus().size())
    return Error("restore: " + std::to_string(state.vcpus.size()) +
                 " vcpus saved, this machine has " + std::to_string(core_->vcpus().size()));
  GuestRam& ram = core_->ram();
  if (source.size() != ram.size()) return Error("restore: guest RAM sizes differ");
  // Only what the source ever populated: mincore() tells resident from dormant, 2 MiB at a time
  // (a dormant page reads as zero, and so does the fresh machine's).
  constexpr uint64_t kRun = 2ull << 20;
  std::vector<unsigned char> resident(kRun / 4096);
  for (const RamRegion& r : source.regions()) {
    for (uint64_t off = 0; off < r.size; off += kRun) {
      const uint64_t len = std::min(kRun, r.size - off);
      const uint8_t* from = source.host(r.gpa + off, len);
      if (mincore(const_cast<uint8_t*>(from), len, resident.data()) < 0)
        return errno_error("restore: mincore");
      if (std::none_of(resident.begin(), resident.begin() + static_cast<long>(len / 4096),
                       [](unsigned char v) { return (v & 1) != 0; }))
        continue;
      SHOAL_TRY(ram.write(r.gpa + off, std::span<const uint8_t>(from, len)), "restore RAM");
    }
  }
  SHOAL_TRY(core_->map_for_boot(), "restore");
  return queue_restore(state);
}

Status Machine::queue_restore(const MachineState& state) {
  if (state.vcpus.size() != core_->vcpus().size())
    return Error("restore: " + std::to_string(state.vcpus.size()) +
                 " vcpus saved, this machine has " + std::to_string(core_->vcpus().size()));
  // Posted before the threads start: run() resumes them only if every restore succeeded.
  auto done = core_->queue_restore(state.vm, state.port_devices, state.vcpus);
  if (!done) return done.error();
  restore_pending_ = std::move(*done);
  return {};
}

Status Machine::build_devices(const RunConfig& config) {
  if (config.serial != "stdio") {
    console_file_ =
        UniqueFd(::open(config.serial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!console_file_.valid()) return errno_error("--serial " + config.serial);
    console_fd_ = console_file_.get();
  }
  auto uart = insert_platform_devices(core_->pio(), core_->vm(),
                                      {[this](uint8_t b) { write_console(b); },
                                       [this](const GuestEnd& end) {
                                         log::info("{}", end.why);
                                         finish(end.code, std::nullopt, end.reset);
                                       }});
  if (!uart) return uart.error();
  uart_ = std::move(*uart);
  if (config.serial == "stdio") console_input_ = std::make_unique<ConsoleInput>(0, uart_);
  auto transports = core_->insert_virtio(std::move(virtio_devices_));
  if (!transports) return transports.error();
  virtio_ = std::move(*transports);
  SHOAL_TRY(core_->pio().insert(RestoreCounter::kPort, 4, std::make_shared<RestoreCounter>(),
                                "restore counter"),
            "");
  SHOAL_TRY(core_->pio().insert(DiscardPort::kPort, 16,
                                std::make_shared<DiscardPort>([this](uint64_t gpa, uint64_t bytes) {
                                  uint8_t* host = core_->ram().host(gpa, bytes);
                                  Status s = host == nullptr ? Status(Error("not guest RAM"))
                                                             : memory_->discard(host, bytes);
                                  if (!s.ok())
                                    log::warn("guest discard of {} bytes at 0x{:x}: {}", bytes, gpa,
                                              s.error().message());
                                }),
                                "discard"),
            "");
  return {};
}

void Machine::write_console(uint8_t byte) {
  while (::write(console_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
}

void Machine::on_vcpu_finished(int id, const ExitAction& action, const std::string& state) {
  const VcpuEnd end = describe_vcpu_end(id, action, state);
  if (end.failed) return finish(std::nullopt, Error(end.reason));
  log::info("{}", end.reason);
  finish(0, std::nullopt, end.reset);
}

void Machine::finish(std::optional<int> code, std::optional<Error> error, bool reset) {
  outcome_.offer(Outcome{code, std::move(error), reset});
}

Result<int> Machine::run() {
  run_started_ns_ = monotonic_ns();
  core_->start_vcpus();
  if (!restore_pending_.empty()) {
    bool restored = true;
    for (auto& f : restore_pending_)
      if (Status s = f.get(); !s.ok() && restored) {
        restored = false;
        finish(std::nullopt, s.error());
      }
    restore_pending_.clear();
    if (restored) resume();
  }
  // bench/startup looks for this line: the first KVM_RUN follows within a thread start. The
  // pool's refill ring and worker start after it, beside the running guest.
  if (started_ns_ != 0)
    log::debug("startup: vCPUs started {:.2f} ms after main()",
               static_cast<double>(monotonic_ns() - started_ns_) / 1e6);
  if (Status s = memory_->start_background(); !s.ok()) finish(std::nullopt, s.error());
  vcpus_started_ = true;
  if (replica_)
    replica_->start([this] { return replica_checkpoint(); },
                    [this](const Error& e) { finish(std::nullopt, e); });
  while (!outcome_.wait_for(std::chrono::seconds(1))) {
    // A fault server stuck on one fault leaves a vCPU waiting in the kernel forever.
    if (memory_ && memory_->stuck_ns() > kStuckFaultNs)
      finish(std::nullopt, Error("guest memory: the fault server has been stuck on one fault for " +
                                 std::to_string(memory_->stuck_ns() / 1000000000) + " s"));
  }
  if (api_) api_->stop();          // no request may pause or save the machine as it stops
  if (replica_) replica_->stop();  // nor a checkpoint (one under way finishes first)
  core_->command_vcpus(VcpuCommand::kStop);
  // Before joining: a vCPU may wait on a fault the server will not serve (see stop_serving).
  memory_->stop_serving();
  // Then the devices: a request under way that waits on a fault is now served by the kernel
  // (the server may be what failed). On one host a page the server never gave out is zero
  // either way, and virtio devices cannot be combined with --restore's lazily loaded pages.
  stop_devices();
  core_->stop_vcpus();
  console_input_.reset();  // restores the terminal before shoal prints its last words
  if (print_stats_) std::fprintf(stderr, "%s", memory_->stats_report().c_str());
  const Outcome& end = outcome_.get();
  if (end.error) return *end.error;
  return end.code.value_or(0);
}

}  // namespace shoal

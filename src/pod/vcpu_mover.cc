#include "pod/vcpu_mover.hpp"

#include <algorithm>
#include <cstdio>

#include "arch/interrupt_sink.hpp"
#include "kvm/vcpu_state.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"

namespace shoal {

using net::MessageType;

VcpuMover::VcpuMover(Config config, MachineCore& core, PodMesh& mesh,
                     MachineCore::VcpuFinished finished, MayCreate may_create,
                     std::function<void(const Error&)> fail, Interrupts interrupts)
    : config_(std::move(config)),
      core_(core),
      mesh_(mesh),
      finished_(std::move(finished)),
      may_create_(std::move(may_create)),
      fail_(std::move(fail)),
      interrupts_(std::move(interrupts)),
      host_of_vcpu_(config_.host_of_vcpu),
      version_of_vcpu_(host_of_vcpu_.size(), 0) {
  thread_ = std::thread([this] { loop(); });
}

VcpuMover::~VcpuMover() {
  stop();
}

void VcpuMover::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    work_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void VcpuMover::set_plan(const BootPlan& plan) {
  std::lock_guard lock(mu_);
  plan_ = plan;
}

Result<std::string> VcpuMover::move(uint32_t vcpu, NodeId to, std::chrono::milliseconds timeout) {
  if (config_.self != 0) return Error("moves go through host " + config_.host_names[0]);
  if (vcpu >= host_of_vcpu_.size())
    return Error("--vcpu " + std::to_string(vcpu) + ": the pod has " +
                 std::to_string(host_of_vcpu_.size()) + " vCPUs");
  if (to >= config_.host_names.size()) return Error("no such host");
  std::unique_lock lock(mu_);
  if (stop_) return Error("the pod is stopping");
  if (!plan_) return Error("the pod's vCPUs have not started yet");
  if (moving_) return Error("vcpu " + std::to_string(*moving_) + " is moving; one move at a time");
  const NodeId from = host_of_vcpu_[vcpu];
  if (from == to)
    return "vcpu " + std::to_string(vcpu) + " already runs on " + config_.host_names[to];
  const auto here = std::count(host_of_vcpu_.begin(), host_of_vcpu_.end(), to);
  if (here >= config_.capacity[to])
    return Error("host " + config_.host_names[to] + " already runs " + std::to_string(here) +
                 " vCPUs, its most");
  const uint64_t version = version_ + 1;
  moving_ = vcpu;
  move_error_.clear();
  const uint64_t started = monotonic_ns();
  const VcpuMove order{vcpu, to, version, {}};
  if (from == config_.self) {
    lock.unlock();
    migrate(order);
    lock.lock();
  } else {
    lock.unlock();
    Status s = mesh_.send_to(from, encode_vcpu_move(MessageType::kVcpuMigrate, order));
    lock.lock();
    if (!s.ok()) {
      moving_.reset();
      return s.error().context("move vcpu " + std::to_string(vcpu));
    }
  }
  const bool done = cv_.wait_for(
      lock, timeout, [&] { return stop_ || !move_error_.empty() || version_ >= version; });
  moving_.reset();
  if (!move_error_.empty()) return Error(move_error_);
  if (!done || version_ < version)
    return Error(stop_ ? "the pod stopped during the move"
                       : "vcpu " + std::to_string(vcpu) + " did not arrive within " +
                             std::to_string(timeout.count()) + " ms");
  // In µs steps: bench/vcpu_migration reads this, and its goal (200 µs) is below 0.1 ms steps.
  char took[32];
  std::snprintf(took, sizeof took, "%.3f", static_cast<double>(monotonic_ns() - started) / 1e6);
  return "vcpu " + std::to_string(vcpu) + " moved from " + config_.host_names[from] + " to " +
         config_.host_names[to] + " in " + took + " ms (location version " +
         std::to_string(version) + ")";
}

void VcpuMover::deliver(NodeId from, MessageType type, VcpuMove m) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
  }
  if (type == MessageType::kVcpuMigrate) return migrate(m);
  if (type == MessageType::kVcpuArrive && arrive_in_shadow(from, m)) return;
  queue({from, type, std::move(m), {}});
}

void VcpuMover::queue(Work w) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    work_.push_back(std::move(w));
  }
  cv_.notify_all();
}

void VcpuMover::loop() {
  pthread_setname_np(pthread_self(), "vcpu-mover");
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !work_.empty(); });
    if (stop_) return;
    Work w = std::move(work_.front());
    work_.pop_front();
    lock.unlock();
    if (w.task)
      w.task();
    else if (w.type == MessageType::kVcpuArrive)
      arrive(w.from, w.move);
    else
      place(w.move.vcpu, w.move.host, w.move.version);
    lock.lock();
  }
}

// On the vCPU's host: pause, save, park, send the state on.
void VcpuMover::migrate(const VcpuMove& m) {
  const uint64_t ordered = monotonic_ns();
  const std::string what = "move vcpu " + std::to_string(m.vcpu);
  bool here = false;
  {
    std::lock_guard lock(mu_);
    here = host_of_vcpu_[m.vcpu] == config_.self;
  }
  // fail_ takes the member's lock, whose holder may be waiting for mu_ (set_plan): never
  // under mu_. It only records why the pod stops, so any thread may call it.
  if (!here) return fail_(Error(what + ": it does not run on " + config_.host_names[config_.self]));
  VcpuThread* v = core_.vcpu(static_cast<int>(m.vcpu));
  if (v == nullptr) return fail_(Error(what + ": no such vCPU here"));
  // The pause completes a pending I/O exit first (VcpuThread); an exit forwarded to host 0 or
  // a page on its way from another host arrives before the vCPU thread takes the command.
  // The save is posted right behind it: the thread applies commands before it runs jobs, so
  // it saves the paused vCPU in the same wake-up, and sends the state on from there too (on
  // a host whose cores all run vCPUs, each wake-up of another thread costs tens of us).
  v->send(VcpuCommand::kPause);
  v->save_then([this, m, v, ordered](Result<VcpuState> state) {
    send_state(m, *v, ordered, std::move(state));
  });
}

void VcpuMover::send_state(const VcpuMove& m, VcpuThread& v, uint64_t ordered,
                           Result<VcpuState> state) {
  if (v.state() == VcpuRunState::kStopped) return;  // the pod is going down
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
  }
  const std::string what = "move vcpu " + std::to_string(m.vcpu);
  if (!state) return fail_(state.error().context(what));
  // What is pending stays in this fd's LAPIC: its sink takes it and sends it on, behind the
  // state on the same link; carried in the state as well, it would arrive twice.
  clear_pending_vectors(state->lapic);
  state->events.nmi.pending = 0;
  VcpuMove arrive{m.vcpu, config_.self, m.version, encode_vcpu_state(*state)};
  if (Status s = mesh_.send_to(m.host, encode_vcpu_move(MessageType::kVcpuArrive, arrive)); !s.ok())
    return fail_(s.error().context(what + " to " + config_.host_names[m.host]));
  const uint64_t sent = monotonic_ns();
  // Only now: an interrupt sent on before the state would reach the destination before it
  // holds the vCPU's interrupts, and come back. Until then one lands in this fd's LAPIC.
  interrupts_.retarget(m.vcpu, m.host, m.version);
  // Parked from here on, for a return: its fd a shadow in the interrupt sink.
  v.send(VcpuCommand::kSink);
  // bench/vcpu_migration reads the times: this host's part of the move, and (on the
  // monotonic clock, which netns hosts share) when the vCPU stopped for it.
  log::info(
      "vcpu {}: paused and sent to {} ({} bytes of state, {} us after the order; move v{} "
      "paused at {} ns)",
      m.vcpu, config_.host_names[m.host], arrive.state.size(), (sent - ordered) / 1000, m.version,
      v.save_began_ns());
}

Result<VcpuState> VcpuMover::decode_arrival(const VcpuMove& m) {
  auto state = decode_vcpu_state(m.state);
  if (state && state->id != m.vcpu)
    return Error("the state is vcpu " + std::to_string(state->id) + "'s");
  return state;
}

// On the destination, the first time the vCPU comes here: a new fd, restored before it runs.
void VcpuMover::arrive(NodeId from, const VcpuMove& m) {
  const uint64_t came = monotonic_ns();
  const std::string what = "vcpu " + std::to_string(m.vcpu) + " from " + config_.host_names[from];
  auto state = decode_arrival(m);
  if (!state) return fail_(state.error().context(what));
  VcpuThread* v = core_.vcpu(static_cast<int>(m.vcpu));
  if (v != nullptr) return fail_(Error(what + ": its fd appeared meanwhile"));
  std::optional<BootPlan> plan;
  {
    std::lock_guard lock(mu_);
    plan = plan_;
  }
  if (!plan) return fail_(Error(what + ": this host has not started its vCPUs"));
  Status made{};
  const bool allowed = may_create_([&] {
    made = core_.create_vcpus({static_cast<int>(m.vcpu)}, static_cast<int>(host_of_vcpu_.size()),
                              *plan, finished_);
    return made;
  });
  if (!allowed) return;  // the pod is stopping
  if (!made.ok()) return fail_(made.error().context(what));
  v = core_.vcpu(static_cast<int>(m.vcpu));
  if (v == nullptr) return fail_(Error(what + ": created, then not found"));
  v->send(VcpuCommand::kPause);  // before its thread starts: restored before it ever runs
  auto restored = v->restore(std::move(*state));
  v->start();
  if (Status s = restored.get(); !s.ok()) return fail_(s.error().context(what));
  if (Status s = interrupts_.release(m.vcpu, {}); !s.ok()) return fail_(s.error().context(what));
  v->send(VcpuCommand::kResume);
  const uint64_t resumed = monotonic_ns();
  place(m.vcpu, config_.self, m.version);
  announce(from, m, "new vCPU fd", came, resumed);
}

bool VcpuMover::arrive_in_shadow(NodeId from, VcpuMove& m) {
  const uint64_t came = monotonic_ns();
  VcpuThread* v = core_.vcpu(static_cast<int>(m.vcpu));
  if (v == nullptr) return false;
  const std::string what = "vcpu " + std::to_string(m.vcpu) + " from " + config_.host_names[from];
  auto state = decode_arrival(m);
  if (!state) {
    fail_(state.error().context(what));
    return true;
  }
  // The restore overwrites the shadow's LAPIC: an IPI from another vCPU of this host landing
  // between reading what is pending there and the restore would be lost, so they pause first.
  // The vCPUs that run here, by their threads (the table may not be current yet): never a
  // shadow. Their pause and the shadow's exit from the sink overlap; the shadow's thread
  // waits for theirs before it reads the LAPIC.
  std::vector<int> others;
  for (auto& t : core_.vcpus())
    if (t->backend().id() != static_cast<int>(m.vcpu) && t->state() == VcpuRunState::kRunning)
      others.push_back(t->backend().id());
  core_.command_vcpus(others, VcpuCommand::kPause);
  v->send(VcpuCommand::kPause);
  auto ready = [this, others] {
    return core_.pause_vcpus(others, [this] {
      std::lock_guard lock(mu_);
      return stop_;
    });
  };
  VcpuMove placed{m.vcpu, config_.self, m.version, {}};
  v->leave_sink_then(
      std::move(*state), true, ready,
      [this, from, what, others, placed, came](Result<std::vector<uint8_t>> pending) {
        core_.command_vcpus(others, VcpuCommand::kResume);
        if (!pending) return fail_(pending.error().context(what));
        if (Status s = interrupts_.release(placed.vcpu, *pending); !s.ok())
          return fail_(s.error().context(what));
        // It runs as soon as this returns; the table first, so nothing here sees it elsewhere.
        const uint64_t resumed = monotonic_ns();
        place(placed.vcpu, config_.self, placed.version);
        queue({.task = [this, from, placed, came, resumed] {
          announce(from, placed, "its shadow's fd", came, resumed);
        }});
      });
  return true;
}

void VcpuMover::announce(NodeId from, const VcpuMove& m, const char* fd, uint64_t came,
                         uint64_t resumed) {
  mesh_.broadcast(
      encode_vcpu_move(MessageType::kVcpuPlaced, {m.vcpu, config_.self, m.version, {}}));
  // bench/vcpu_migration reads the times: this host's part, and when the vCPU ran again.
  log::info(
      "vcpu {}: arrived from {} and runs here ({}, {} us after its state came; move v{} resumed "
      "at {} ns)",
      m.vcpu, config_.host_names[from], fd, (resumed - came) / 1000, m.version, resumed);
}

void VcpuMover::place(uint32_t vcpu, NodeId host, uint64_t version) {
  if (vcpu >= config_.host_of_vcpu.size() || host >= config_.host_names.size())
    return fail_(Error("vcpu " + std::to_string(vcpu) + " placed on host " + std::to_string(host) +
                       ": out of range"));
  {
    std::lock_guard lock(mu_);
    // Announcements of different moves come over different links and may cross: each vCPU's
    // entry keeps the version that set it, and only a newer one changes it.
    if (version <= version_of_vcpu_[vcpu]) return;
    host_of_vcpu_[vcpu] = host;
    version_of_vcpu_[vcpu] = version;
    version_ = std::max(version_, version);
  }
  interrupts_.retarget(vcpu, host, version);
  cv_.notify_all();
}

std::string VcpuMover::describe() const {
  std::lock_guard lock(mu_);
  std::string s;
  for (size_t v = 0; v < host_of_vcpu_.size(); ++v)
    s += (s.empty() ? "" : " ") + std::to_string(v) + "@" + config_.host_names[host_of_vcpu_[v]];
  return s + " (v" + std::to_string(version_) + ")";
}

std::vector<uint32_t> VcpuMover::vcpus_here() const {
  std::lock_guard lock(mu_);
  std::vector<uint32_t> out;
  for (size_t v = 0; v < host_of_vcpu_.size(); ++v)
    if (host_of_vcpu_[v] == config_.self) out.push_back(static_cast<uint32_t>(v));
  return out;
}

uint64_t VcpuMover::version() const {
  std::lock_guard lock(mu_);
  return version_;
}

std::optional<BootPlan> VcpuMover::plan() const {
  std::lock_guard lock(mu_);
  return plan_;
}

std::pair<std::vector<NodeId>, uint64_t> VcpuMover::table() const {
  std::lock_guard lock(mu_);
  return {host_of_vcpu_, version_};
}

Status VcpuMover::restore_table(const std::vector<NodeId>& host_of_vcpu, uint64_t version) {
  std::lock_guard lock(mu_);
  if (host_of_vcpu.size() != host_of_vcpu_.size())
    return Error("location table: " + std::to_string(host_of_vcpu.size()) + " vCPUs, the pod has " +
                 std::to_string(host_of_vcpu_.size()));
  std::vector<int> here(config_.capacity.size(), 0);
  for (size_t v = 0; v < host_of_vcpu.size(); ++v) {
    const NodeId h = host_of_vcpu[v];
    if (h >= config_.capacity.size())
      return Error("location table: vcpu " + std::to_string(v) + " on host " + std::to_string(h));
    if (++here[h] > config_.capacity[h])
      return Error("location table: host " + config_.host_names[h] + " would run " +
                   std::to_string(here[h]) + " vCPUs, more than its most");
  }
  host_of_vcpu_ = host_of_vcpu;
  version_of_vcpu_.assign(host_of_vcpu_.size(), version);
  version_ = version;
  return {};
}

}  // namespace shoal

#include "pod/pod_member.hpp"

#include <unistd.h>

#include <algorithm>
#include <future>
#include <sstream>

#include "arch/kernel_loader.hpp"
#include "shoal/log.hpp"
#include "shoal/prometheus_text.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr auto kMeshTimeout = std::chrono::seconds(15);

}  // namespace

PodMember::PodMember(PodMemberConfig config) : config_(std::move(config)) {}

PodMember::~PodMember() {
  stop({0, true, "the node is shutting down"});
  if (monitor_.joinable()) monitor_.join();
  stop_device_thread();  // done by the monitor already, unless it never ran
}

Result<std::unique_ptr<PodMember>> PodMember::create(PodMemberConfig config) {
  std::unique_ptr<PodMember> m(new PodMember(std::move(config)));
  const PodSpec& spec = m->config_.spec;
  if (spec.transport == PodTransport::kRdma) {
    // Before anything else: a host that cannot do RDMA refuses the pod at once.
    auto device = net::RdmaDevice::open(m->me().rdma_device);
    if (!device) return device.error().context("host " + m->me().name);
    if (auto gid = (*device)->gid_index_for(m->me().host); !gid)
      return gid.error().context("host " + m->me().name);
    SHOAL_TRY((*device)->check_capabilities(net::RdmaLinkConfig{}.slots), "host " + m->me().name);
    m->rdma_ = std::move(*device);
  }
  auto kvm = Kvm::open();
  if (!kvm) return kvm.error();
  // Every slot of a pod of several hosts up front: a page walk here may go through page
  // tables that only another host's vCPUs wrote (memory/ram_slots.hpp).
  auto core = MachineCore::create(std::move(*kvm), spec.memory,
                                  {.every_slot = spec.hosts.size() > 1, .interrupt_sink = true});
  if (!core) return core.error();
  m->core_ = std::move(*core);

  std::vector<std::string> names;
  for (const auto& h : spec.hosts) names.push_back(h.name);
  PodMember* self = m.get();
  m->mesh_ = std::make_unique<PodMesh>(
      m->config_.self, names,
      PodMesh::Handlers{
          [self](CoherenceMessage msg) { self->memory_->deliver(std::move(msg)); },
          // Device exits leave the link's reader for the device thread: a device that waits
          // (a discard for its acks) must not stop the link it waits on.
          [self](NodeId from, const ForwardedExit& e, uint32_t request) {
            std::lock_guard lock(self->device_mu_);
            self->device_queue_.push_back({from, e, request});
            self->device_cv_.notify_one();
          },
          // The notice names the host where the pod's stop began (see monitor()).
          [self](NodeId, const PodOutcome& o) {
            PodOutcome relayed = o;
            relayed.relayed = true;
            self->stop(relayed);
          },
          [self](NodeId from, const Error& e) {
            self->stop({1, true, "lost host " + self->mesh_->name_of(from) + ": " + e.message()});
          },
          [self](NodeId from, net::MessageType type, VcpuMove m) {
            // On the reader, before the next frame of this link: the interrupts the source's
            // sink sends after the state must be held for the vCPU, not sent back.
            if (type == net::MessageType::kVcpuArrive) self->router_->expect(m.vcpu, m.version);
            if (type == net::MessageType::kPlacementProposal) {
              if (self->placement_) self->placement_->proposal({m.vcpu, m.host, m.version, 0});
              return;
            }
            self->mover_->deliver(from, type, std::move(m));
          },
          [self](NodeId from, net::MessageType type, SnapshotStep step) {
            self->snapshotter_->deliver(from, type, std::move(step));
          },
          [self](NodeId from, const InterruptMessage& m) { self->router_->deliver(from, m); }},
      std::chrono::milliseconds(spec.failure_timeout_ms));

  if (spec.placement == PodPlacement::kAuto) {
    std::vector<int> capacity;
    for (const PodHost& h : spec.hosts) capacity.push_back(h.max_vcpus);
    m->placement_ = std::make_unique<PlacementRunner>(
        PlacementConfig{}, m->config_.self, static_cast<size_t>(spec.vcpus), capacity,
        PlacementRunner::Member{
            [self] { return self->mover_->table(); },
            [self] {
              std::vector<std::pair<uint32_t, uint32_t>> threads;
              std::lock_guard lock(self->mu_);  // vCPUs are created under it
              for (auto& v : self->core_->vcpus())
                threads.emplace_back(v->tid(), static_cast<uint32_t>(v->backend().id()));
              return threads;
            },
            [self](const PlacementProposal& p) {
              (void)self->mesh_->send_to(0, encode_vcpu_move(net::MessageType::kPlacementProposal,
                                                             {p.vcpu, p.to, p.version, {}}));
            },
            [self](uint32_t vcpu, NodeId to) { return self->move_vcpu(vcpu, to); }});
  }
  CoherentMemoryConfig mc;
  mc.self = m->config_.self;
  mc.hold_ns = spec.page_hold_us * 1000;
  mc.max_hold_ns = 16 * mc.hold_ns;
  // Each host has the first place for a longest hold in turn: long enough for a vCPU to get
  // a walk's tables and run, short enough that no vCPU starves (docs/coherence.md).
  mc.hosts = static_cast<NodeId>(spec.hosts.size());
  mc.priority_turn_ns = mc.max_hold_ns;
  if (m->placement_)
    mc.on_remote_fault = [self](uint32_t tid, NodeId source) {
      self->placement_->remote_fault(tid, source);
    };
  mc.pool_bytes = m->me().zero_pool_bytes;
  mc.budget_bytes = m->me().memory_budget_bytes != 0
                        ? m->me().memory_budget_bytes
                        : static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                              static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  mc.home_of_piece.assign((spec.memory + kHomePieceBytes - 1) / kHomePieceBytes, 0);
  for (size_t h = 0; h < spec.hosts.size(); ++h)
    for (const MemoryRange& r : spec.hosts[h].home)
      for (uint64_t a = r.start; a < r.start + r.size; a += kHomePieceBytes)
        mc.home_of_piece[a / kHomePieceBytes] = static_cast<NodeId>(h);
  auto memory = CoherentMemory::create(m->core_->ram().base(), m->core_->ram().size(), mc,
                                       *m->mesh_, [self](const Error& e) {
                                         self->stop({1, true, e.message()});
                                       });
  if (!memory) return memory.error();
  m->memory_ = std::move(*memory);
  VcpuMover::Config mv;
  mv.self = m->config_.self;
  mv.host_of_vcpu.assign(static_cast<size_t>(spec.vcpus), 0);
  for (size_t h = 0; h < spec.hosts.size(); ++h) {
    for (int v : spec.hosts[h].vcpus)
      mv.host_of_vcpu[static_cast<size_t>(v)] = static_cast<NodeId>(h);
    mv.capacity.push_back(spec.hosts[h].max_vcpus);
  }
  mv.host_names = names;
  m->router_ = std::make_unique<InterruptRouter>(m->config_.self, mv.host_of_vcpu, m->core_->vm(),
                                                 *m->mesh_);
  m->core_->set_interrupt_sink([self](int vcpu, ApicDelivery mode, uint8_t vector) {
    self->router_->on_sink(static_cast<uint32_t>(vcpu), mode, vector);
  });
  m->mover_ = std::make_unique<VcpuMover>(
      std::move(mv), *m->core_, *m->mesh_,
      [self](int id, const ExitAction& a, const std::string& st) {
        self->on_vcpu_finished(id, a, st);
      },
      [self](const std::function<Status()>& create) {
        std::lock_guard lock(self->mu_);
        if (self->outcome_.decided()) return false;
        (void)create();
        return true;
      },
      [self](const Error& e) {
        self->stop({1, true, e.message()});
      },
      VcpuMover::Interrupts{[self](uint32_t vcpu, NodeId host, uint64_t version) {
                              self->router_->retarget(vcpu, host, version);
                            },
                            [self](uint32_t vcpu, const std::vector<uint8_t>& pending) {
                              return self->router_->release(vcpu, pending);
                            }});
  m->snapshotter_ = std::make_unique<PodSnapshotter>(
      m->config_.self, names, *m->mesh_,
      PodSnapshotter::Member{
          [self] { return self->pause_here(); }, [self] { self->resume_here(); },
          [self] { return self->memory_->quiet(); }, [self] { return self->mover_->version(); },
          [self] { return self->core_->slot_gpas(); },
          [self](const std::string& dir, const std::vector<uint64_t>& slots, uint64_t snapshot_id) {
            return self->save_snapshot(dir, slots, snapshot_id);
          },
          [self](const std::string& dir) { return self->commit_snapshot(dir); },
          [self](const Error& e) {
            self->stop({1, true, e.message()});
          }});
  SHOAL_TRY(m->build_devices(), "devices");
  if (m->config_.self == 0) m->device_thread_ = std::thread([self] { self->device_loop(); });
  m->monitor_ = std::thread([self] { self->monitor(); });
  return m;
}

Status PodMember::connect_mesh() {
  const PodSpec& spec = config_.spec;
  for (NodeId n = 0; n < config_.self; ++n) {
    const PodHost& h = spec.hosts[n];
    auto tcp = net::TcpLink::connect(h.host, h.port, config_.identity);
    if (!tcp) return tcp.error().context("connect to host " + h.name);
    SHOAL_TRY((*tcp)->send(encode_mesh_join({config_.self, spec.name})), "join " + h.name);
    auto link = mesh_link(std::shared_ptr<net::TcpLink>(std::move(*tcp)), true);
    if (!link) return link.error().context("host " + h.name);
    if (!mesh_->attach(n, std::move(*link))) return Error("host " + h.name + " joined twice");
  }
  if (!mesh_->wait_complete(kMeshTimeout))
    return Error("the pod's mesh did not come up within " + std::to_string(kMeshTimeout.count()) +
                 " s");
  std::lock_guard lock(mu_);
  state_ = "connected";
  return {};
}

bool PodMember::attach(NodeId from, std::shared_ptr<net::TcpLink> link) {
  auto l = mesh_link(std::move(link), false);
  if (!l) {
    log::warn("pod {}: {}", config_.spec.name, l.error().message());
    return false;
  }
  return mesh_->attach(from, std::move(*l));
}

Result<std::shared_ptr<net::Link>> PodMember::mesh_link(std::shared_ptr<net::TcpLink> tcp,
                                                        bool connecting) {
  if (!rdma_) return std::shared_ptr<net::Link>(std::move(tcp));
  net::RdmaLinkConfig c;
  c.sealed = config_.spec.rdma_sealed;
  c.local_address = me().host;  // its GID, whatever source address TCP picked
  auto rdma = net::RdmaLink::upgrade(std::move(tcp), rdma_, connecting, c);
  if (!rdma) return rdma.error();
  log::info("pod {}: RDMA link to {} up on {}", config_.spec.name, (*rdma)->peer_name(),
            rdma_->name());
  return std::shared_ptr<net::Link>(std::move(*rdma));
}

Result<BootPlan> PodMember::load() {
  if (!config_.restore_dir.empty()) return restore();
  const PodSpec& spec = config_.spec;
  // The loader's writes are faults like any other: pages homed elsewhere are fetched from
  // their homes, so the mesh must be up.
  auto plan = load_guest_files(core_->ram(), spec.kernel, spec.initrd, spec.cmdline, spec.vcpus,
                               static_cast<uint32_t>(spec.virtio().count()));
  if (!plan) return plan.error();
  SHOAL_TRY(core_->map_for_boot(), "");
  log::info("pod {}: loaded {}: {}", spec.name, spec.kernel, plan->description);
  return plan;
}

Status PodMember::run(const BootPlan& plan) {
  if (restored_) return run_restored(plan);
  // The entry point and boot structures are on host 0's pages; their slots must exist here too.
  SHOAL_TRY(core_->map_for_boot({0, plan.entry, plan.boot_info}), "");
  // Under mu_: the monitor stops the vCPUs once the outcome is decided, so they are either
  // all created before that or not at all.
  std::lock_guard lock(mu_);
  if (outcome_.decided()) return Error("the pod is stopping");
  SHOAL_TRY(core_->create_vcpus(me().vcpus, config_.spec.vcpus, plan,
                                [this](int id, const ExitAction& a, const std::string& st) {
                                  on_vcpu_finished(id, a, st);
                                }),
            "");
  SHOAL_TRY(create_shadows(me().vcpus, plan), "");
  core_->start_vcpus();
  mover_->set_plan(plan);
  if (placement_) placement_->start();
  state_ = "running";
  return {};
}

Status PodMember::create_shadows(const std::vector<int>& here, const BootPlan& plan) {
  std::vector<int> others;
  for (int v = 0; v < config_.spec.vcpus; ++v)
    if (std::find(here.begin(), here.end(), v) == here.end()) others.push_back(v);
  SHOAL_TRY(core_->create_vcpus(others, config_.spec.vcpus, plan,
                                [this](int id, const ExitAction& a, const std::string& st) {
                                  on_vcpu_finished(id, a, st);
                                }),
            "interrupt sink");
  core_->command_vcpus(others, VcpuCommand::kSink);
  return {};
}

Result<std::string> PodMember::move_vcpu(uint32_t vcpu, NodeId to) {
  std::lock_guard lock(control_mu_);
  {
    // A vCPU that arrives somewhere resumes there: a paused pod (`pod snapshot --stop`) stays
    // as it was saved.
    std::lock_guard state_lock(mu_);
    if (state_ == "paused") return Error("the pod is paused (by `pod snapshot --stop`)");
  }
  return mover_->move(vcpu, to, std::chrono::seconds(10));
}

void PodMember::on_vcpu_finished(int id, const ExitAction& action, const std::string& state) {
  const VcpuEnd end = describe_vcpu_end(id, action, state);
  stop({end.failed ? 1 : 0, end.failed, end.reason});
}

void PodMember::write_console(uint8_t byte) {
  std::lock_guard lock(console_mu_);
  console_line_.push_back(static_cast<char>(byte));
  if (byte == '\n' || console_line_.size() >= 4096) {
    if (config_.console) config_.console(console_line_);
    console_line_.clear();
  }
}

void PodMember::flush_console() {
  std::lock_guard lock(console_mu_);
  if (!console_line_.empty() && config_.console) config_.console(console_line_);
  console_line_.clear();
}

void PodMember::stop(const PodOutcome& outcome) {
  {
    std::lock_guard lock(mu_);
    if (!outcome_.offer(outcome)) return;
    state_ = "stopping";
  }
}

// Tears the pod down off the vCPU, mesh and fault threads (any of which may have called
// stop()), in an order that cannot hang: vCPUs are kicked; the coherent memory stops and
// closes its userfaultfd, which wakes any vCPU still waiting for a page from another host.
void PodMember::monitor() {
  // The watchdog, as on a single host: a vCPU waiting on guest memory waits in the kernel,
  // so a fault nobody serves would hang the pod for good.
  while (!outcome_.wait_for(std::chrono::seconds(1))) {
    if (const uint64_t ns = memory_->stuck_ns(); ns > kStuckFaultNs)
      stop({1, true,
            "guest memory: a page fault has waited " + std::to_string(ns / 1'000'000'000) +
                " s to be served"});
  }
  const PodOutcome outcome = outcome_.get();
  log::at(outcome.failed ? log::Level::kWarn : log::Level::kInfo, "pod {}: stopping: {}",
          config_.spec.name, outcome.reason);
  // Every member tells every other, also one that stops because it got a notice: otherwise a
  // member that has not read the first notice yet would see this one's links end and report
  // an orderly stop as a lost host. A failure that began here is named after this host.
  PodOutcome notice = outcome;
  if (outcome.failed && !outcome.relayed)
    notice.reason = "host " + me().name + ": " + outcome.reason;
  mesh_->broadcast(encode_pod_outcome(net::MessageType::kPodLeave, notice));
  core_->command_vcpus(VcpuCommand::kStop);
  leave_guest_memory();
  memory_->stop();  // also ends a discard waiting for acks on the device thread
  mesh_->close();   // also fails forwarded accesses still waiting; no more device work
  mover_->stop();   // its pause of a vCPU ends with the vCPU's stop; it creates no more vCPUs
  if (placement_) placement_->stop();  // a move it waits on has ended with the mover
  snapshotter_->stop();                // as the mover's: its pause ends once the outcome is decided
  stop_device_thread();
  core_->stop_vcpus();
  flush_console();
  log::info("pod {}: stopped after {} page faults", config_.spec.name,
            memory_->stats().faults.load());
  {
    std::lock_guard lock(mu_);
    state_ = "stopped";
  }
  if (config_.finished) config_.finished(outcome);
  std::lock_guard lock(mu_);
  torn_down_ = true;
  cv_.notify_all();
}

// The leave's second phase (docs/pod.md, "Stopping"). Every member serves the pages it holds
// until every other one is done with guest memory: a disk request of host 0's under way may
// need a page held here (its buffer), and a member that stopped serving would leave it
// waiting for good. This host's own vCPUs are not waited for: they are stopping, and a fault
// of theirs still waiting ends when the memory stops (the page it gets no longer matters).
// Each wait is bounded: a host that died is lost after the failure timeout (its link's end
// counts as its done), and past the grace the memory stops anyway, which turns a disk
// request's fault still waiting into an ordinary one.
void PodMember::leave_guest_memory() {
  const auto grace = std::chrono::milliseconds(config_.spec.failure_timeout_ms) + kLeaveGrace;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(deadline - std::chrono::steady_clock::now(), std::chrono::nanoseconds(0)));
  };
  // The devices' workers finish their requests under way, whose buffers may be any host's
  // pages (a disk's read, a frame the tap handed to the net device).
  auto devices = std::async(std::launch::async, [this] { stop_virtio_devices(); });
  const bool devices_stopped = devices.wait_for(left()) == std::future_status::ready;
  mesh_->send_done();
  const bool others_done = mesh_->wait_others_done(left());
  if (!devices_stopped || !others_done)
    log::warn("pod {}: {} still {} guest memory after {} ms; stopping it anyway", config_.spec.name,
              !devices_stopped ? "a device request" : "another host",
              !devices_stopped ? "waits on" : "uses", grace.count());
  if (!devices_stopped) {
    memory_->stop();  // wakes the request's fault
    devices.wait();
  }
}

void PodMember::wait_stopped() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return torn_down_; });
}

std::string PodMember::metrics() const {
  std::ostringstream m;
  auto gauge = [&](const char* name, const char* help, double v, const char* type = "gauge") {
    append_metric(m, name, help, v, type);
  };
  const auto& st = memory_->stats();
  gauge("shoal_pod_vcpus_here", "vCPUs running on this host",
        static_cast<double>(mover_->vcpus_here().size()));
  gauge("shoal_paused", "1 while the pod is paused", state() == "paused" ? 1 : 0);
  gauge("shoal_pod_location_version", "version of the pod's vCPU location table",
        static_cast<double>(mover_->version()));
  gauge("shoal_guest_present_bytes", "guest RAM mapped on this host",
        static_cast<double>(memory_->mapped_pages() * kPageSize));
  gauge("shoal_pod_faults_total", "guest page faults on this host",
        static_cast<double>(st.faults.load()), "counter");
  gauge("shoal_pod_page_bytes_sent_total", "page contents sent to other hosts",
        static_cast<double>(st.page_bytes_sent.load()), "counter");
  gauge("shoal_pod_page_bytes_received_total", "page contents received from other hosts",
        static_cast<double>(st.page_bytes_received.load()), "counter");
  gauge("shoal_pod_placement_moves_total", "moves the placement policy made (host 0)",
        placement_ ? static_cast<double>(placement_->moves()) : 0, "counter");
  gauge("shoal_pod_interrupts_sent_total", "interrupts sent on to the host of their vCPU",
        static_cast<double>(router_->forwarded()), "counter");
  gauge("shoal_pod_interrupts_received_total", "interrupts received from other hosts",
        static_cast<double>(router_->received()), "counter");
  return m.str();
}

std::string PodMember::status() const {
  std::ostringstream s;
  std::string vcpus;
  for (uint32_t v : mover_->vcpus_here()) vcpus += (vcpus.empty() ? "" : ",") + std::to_string(v);
  if (vcpus.empty()) vcpus = "none";
  const std::string placement = mover_->describe();
  std::lock_guard lock(mu_);
  const auto& st = memory_->stats();
  s << "pod " << config_.spec.name << " host " << me().name << " (" << config_.self + 1 << "/"
    << config_.spec.hosts.size() << "): " << state_ << "; vcpus " << vcpus << "; faults "
    << st.faults << ", dormant pages served here "
    << st.local_dormant_pages + st.remote_dormant_pages << ", requests " << st.requests_sent
    << ", page bytes out/in " << st.page_bytes_sent << "/" << st.page_bytes_received
    << ", interrupts out/in " << router_->forwarded() << "/" << router_->received()
    << "; placement " << placement;
  return s.str();
}

}  // namespace shoal

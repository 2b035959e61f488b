// PodMember's part of a pod snapshot (pod/pod_snapshot.hpp) and of `pod up --restore`: what
// this host saves, and how a fresh member takes it back before any vCPU of the pod runs.

#include <cstdio>
#include <filesystem>
#include <future>

#include "memory/snapshot_file.hpp"
#include "memory/snapshot_writer.hpp"
#include "pod/pod_member.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

namespace shoal {

Result<std::string> PodMember::snapshot(const std::string& dir, bool stay_paused) {
  // Refused, not queued: a second snapshot, or a move (it would resume what the pause held).
  std::unique_lock lock(control_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return Error("pod snapshot: a vCPU move or another snapshot is under way");
  {
    std::lock_guard state_lock(mu_);
    if (state_ != "running" && state_ != "paused")
      return Error("pod snapshot: the pod is " + state_);
    stay_paused = stay_paused || state_ == "paused";  // a paused pod stays paused, as `run`'s
  }
  return snapshotter_->snapshot(dir, stay_paused);
}

Status PodMember::pause_pod() {
  std::unique_lock lock(control_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return Error("pause: a vCPU move or a snapshot is under way");
  if (state() != "running") return Error("pause: the pod is " + state());
  return snapshotter_->pause_all();
}

Status PodMember::resume_pod() {
  std::unique_lock lock(control_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return Error("resume: a vCPU move or a snapshot is under way");
  if (state() != "paused") return Error("resume: the pod is " + state());
  return snapshotter_->resume_all();
}

std::string PodMember::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::vector<int> PodMember::vcpus_here() const {
  std::vector<int> ids;
  for (uint32_t id : mover_->vcpus_here()) ids.push_back(static_cast<int>(id));
  return ids;
}

// Only the vCPUs that run here: a parked one (moved away) stays paused, and is not ours to save.
Status PodMember::pause_here() {
  {
    // Not while this member is still starting (run() creates the vCPUs) or stopping.
    std::lock_guard lock(mu_);
    if (state_ != "running" && state_ != "paused")
      return Error("this host is " + state_ + ", not running");
  }
  // A vCPU waiting for a page or a forwarded exit takes the pause once that arrives; one the
  // pod's stop ends never does.
  SHOAL_TRY(core_->pause_vcpus(vcpus_here(), [this] { return outcome_.decided(); }), "");
  std::lock_guard lock(mu_);
  if (state_ == "running") state_ = "paused";
  return {};
}

void PodMember::resume_here() {
  core_->command_vcpus(vcpus_here(), VcpuCommand::kResume);
  std::lock_guard lock(mu_);
  if (state_ == "paused") state_ = "running";
}

Result<std::string> PodMember::save_snapshot(const std::string& dir,
                                             const std::vector<uint64_t>& slots,
                                             uint64_t snapshot_id) {
  const PodSpec& spec = config_.spec;
  if (spec.virtio().count() != 0)
    return Error(
        "snapshot: virtio devices (spec.disks, spec.nets, spec.channel) do not save their state "
        "yet");
  PodMemberState st;
  st.pod_name = spec.name;
  st.snapshot_id = snapshot_id;
  st.host = config_.self;
  st.hosts = static_cast<uint16_t>(spec.hosts.size());
  const std::optional<BootPlan> plan = mover_->plan();
  if (!plan) return Error("save: the pod's vCPUs have not started");
  st.boot_plan = encode_boot_plan(net::MessageType::kPodRun, *plan).payload;
  auto [table, version] = mover_->table();
  st.host_of_vcpu.assign(table.begin(), table.end());
  st.location_version = version;
  st.slot_gpas = slots;
  auto vm = core_->vm().save_state();
  if (!vm) return vm.error().context("save VM");
  st.machine.vm = *vm;
  for (int id : vcpus_here()) {
    VcpuThread* v = core_->vcpu(id);
    if (v == nullptr) return Error("save: vcpu " + std::to_string(id) + " is not on this host");
    auto saved = v->save().get();
    if (!saved) return saved.error().context("save");
    st.machine.vcpus.push_back(std::move(*saved));
  }
  st.machine.port_devices = core_->pio().save_state();
  st.machine.cpuid = core_->cpuid_base();
  std::vector<uint64_t> pages;
  auto memory = memory_->save(pages);
  if (!memory) return memory.error();
  st.memory = std::move(*memory);

  SnapshotInput in;
  in.ram = core_->ram().base();
  in.ram_bytes = core_->ram().size();
  in.pages = &pages;
  in.page_at = [this](uint64_t page) { return memory_->saved_page(page); };
  in.vcpus = static_cast<uint32_t>(spec.vcpus);  // the guest's; this host's are in the state
  in.state = encode_pod_member_state(st);
  std::error_code made;
  std::filesystem::create_directories(dir, made);
  if (made) return Error("snapshot directory " + dir + ": " + made.message());
  const std::string path = dir + "/" + me().name + ".snap";
  auto stats = write_snapshot(path + ".new", in);  // the commit step renames it
  if (!stats) return stats.error();
  char text[256];
  std::snprintf(text, sizeof text,
                "%s: %zu vCPU%s, %llu pages (%llu zero, %zu shared, %zu home copies), "
                "%zu home entries, %s",
                path.c_str(), st.machine.vcpus.size(), st.machine.vcpus.size() == 1 ? "" : "s",
                static_cast<unsigned long long>(stats->mapped_pages),
                static_cast<unsigned long long>(stats->zero_pages), st.memory.shared.size(),
                st.memory.home_copies.size(), st.memory.homes.size(),
                format_size(stats->file_bytes).c_str());
  return std::string(text);
}

Status PodMember::commit_snapshot(const std::string& dir) {
  const std::string path = dir + "/" + me().name + ".snap";
  SHOAL_TRY(rename_durably(path + ".new", path), "commit");
  return {};
}

Result<BootPlan> PodMember::restore() {
  const PodSpec& spec = config_.spec;
  if (!spec.disks.empty())
    return Error(
        "restore: a pod with spec.disks cannot be restored yet (virtio devices do not "
        "save their state)");
  const std::string path = config_.restore_dir + "/" + me().name + ".snap";
  auto file = SnapshotFile::open(path);
  if (!file) return file.error();
  auto st = decode_pod_member_state((*file)->state());
  if (!st) return st.error().context(path);
  auto mismatch = [&](const std::string& what) {
    return Error(path + ": " + what + " (snapshots restore into the pod and host they came from)");
  };
  if (st->pod_name != spec.name) return mismatch("pod " + st->pod_name + ", not " + spec.name);
  if (st->host != config_.self || st->hosts != spec.hosts.size())
    return mismatch("host " + std::to_string(st->host) + " of " + std::to_string(st->hosts) +
                    ", this is host " + std::to_string(config_.self) + " of " +
                    std::to_string(spec.hosts.size()));
  if (st->host_of_vcpu.size() != static_cast<size_t>(spec.vcpus))
    return mismatch(std::to_string(st->host_of_vcpu.size()) + " vCPUs, the spec has " +
                    std::to_string(spec.vcpus));
  auto plan = decode_boot_plan(net::Frame{net::MessageType::kPodRun, 0, st->boot_plan});
  if (!plan) return plan.error().context(path);
  SHOAL_TRY(core_->use_saved_cpuid(st->machine.cpuid), path);
  std::vector<NodeId> table(st->host_of_vcpu.begin(), st->host_of_vcpu.end());
  SHOAL_TRY(mover_->restore_table(table, st->location_version), path);
  router_->reset(table, st->location_version);
  const uint64_t t0 = monotonic_ns();
  SHOAL_TRY(memory_->restore(st->memory, **file, spec.hosts.size()), path);
  // Every member's slots: a page walk or an instruction fetch may touch any member's page.
  SHOAL_TRY(core_->map_for_boot(st->slot_gpas), "");
  log::info("pod {}: restored {} ({} mapped here, {} vCPU{}) in {:.1f} ms", spec.name, path,
            format_size(memory_->mapped_pages() * kPageSize), st->machine.vcpus.size(),
            st->machine.vcpus.size() == 1 ? "" : "s",
            static_cast<double>(monotonic_ns() - t0) / 1e6);
  plan->description = "snapshot " + path;
  plan->all_vcpus_at_entry = true;  // every vCPU's registers come from the files
  restored_snapshot_id_ = st->snapshot_id;
  restored_ = std::move(*st);
  std::lock_guard lock(mu_);
  state_ = "restored";
  return plan;
}

// As run(), with the vCPUs the snapshot put on this host, each restored before it runs.
Status PodMember::run_restored(const BootPlan& plan) {
  std::vector<int> ids;
  for (const VcpuState& v : restored_->machine.vcpus) ids.push_back(static_cast<int>(v.id));
  std::vector<std::future<Status>> restores;
  {
    std::lock_guard lock(mu_);
    if (outcome_.decided()) return Error("the pod is stopping");
    SHOAL_TRY(core_->create_vcpus(ids, config_.spec.vcpus, plan,
                                  [this](int id, const ExitAction& a, const std::string& st) {
                                    on_vcpu_finished(id, a, st);
                                  }),
              "");
    SHOAL_TRY(create_shadows(ids, plan), "");
    // Posted before the threads start: each vCPU restores itself and waits to be resumed.
    auto queued = core_->queue_restore(restored_->machine.vm, restored_->machine.port_devices,
                                       std::move(restored_->machine.vcpus));
    if (!queued) return queued.error();
    restores = std::move(*queued);
    core_->start_vcpus();
  }
  // Outside mu_: a vCPU that fails calls back into stop(), which takes it.
  for (size_t i = 0; i < restores.size(); ++i)
    if (Status s = restores[i].get(); !s.ok())
      return s.error().context("restore vcpu " + std::to_string(ids[i]));
  mover_->set_plan(plan);
  if (placement_) placement_->start();
  std::lock_guard lock(mu_);
  if (outcome_.decided()) return Error("the pod is stopping");
  core_->command_vcpus(vcpus_here(), VcpuCommand::kResume);
  state_ = "running";
  restored_.reset();
  return {};
}

}  // namespace shoal

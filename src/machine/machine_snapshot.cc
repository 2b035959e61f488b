// Machine's snapshot, restore-from-file and control API (docs/snapshot.md).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "machine/machine.hpp"
#include "memory/ram_slots.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"
#include "shoal/prometheus_text.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

// KVM slot boundaries fall on multiples of the boot slot's size in RAM offsets (the regions
// start on them), so one guest address per such window that holds data reaches every slot
// the data is in. Offsets are added in increasing order.
class SlotAddresses {
 public:
  static constexpr uint64_t kWindow = RamSlots::kBootSlotBytes;

  explicit SlotAddresses(const std::vector<RamRegion>& regions) : regions_(regions) {}
  void add(uint64_t offset) {
    if (!gpas_.empty() && offset / kWindow == last_window_) return;
    last_window_ = offset / kWindow;
    for (const RamRegion& r : regions_)
      if (offset >= r.host_offset && offset - r.host_offset < r.size)
        gpas_.push_back(r.gpa + (offset - r.host_offset));
  }
  std::vector<uint64_t> take() { return std::move(gpas_); }

 private:
  const std::vector<RamRegion>& regions_;
  std::vector<uint64_t> gpas_;
  uint64_t last_window_ = 0;
};

}  // namespace

std::vector<uint64_t> snapshot_slot_gpas(const SnapshotFile& file,
                                         const std::vector<RamRegion>& regions) {
  SlotAddresses slots(regions);
  for (const PageExtent& e : file.index().extents) {
    const uint64_t end = (uint64_t{e.first_page} + e.pages) * kSnapshotPageBytes;
    for (uint64_t at = uint64_t{e.first_page} * kSnapshotPageBytes; at < end;
         at = (at / SlotAddresses::kWindow + 1) * SlotAddresses::kWindow)
      slots.add(at);
  }
  return slots.take();
}

std::vector<uint64_t> image_slot_gpas(const std::string& image,
                                      const std::vector<RamRegion>& regions) {
  SlotAddresses slots(regions);
  UniqueFd fd(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};  // the restore itself reports it
  // SEEK_DATA finds a window's first data, then the search jumps to the next window (a guest
  // whose data and zero pages alternate would otherwise take two lseek() calls a page).
  const auto window = static_cast<off_t>(SlotAddresses::kWindow);
  for (off_t at = 0;;) {
    const off_t data = lseek(fd.get(), at, SEEK_DATA);
    if (data < 0) break;
    slots.add(static_cast<uint64_t>(data));
    at = (data / window + 1) * window;
  }
  return slots.take();
}

Status Machine::restore_from_file(const RunConfig& config) {
  const SnapshotFile& file = *config.memory_options.restore_from;
  auto state = decode_machine_state(file.state());
  if (!state) return state.error();
  if (state->vcpus.size() != file.header().vcpus ||
      file.header().vcpus != static_cast<uint32_t>(config.vcpus))
    return Error("the snapshot's header says " + std::to_string(file.header().vcpus) +
                 " vcpus, its state holds " + std::to_string(state->vcpus.size()));
  plan_.description = "snapshot " + file.path();
  plan_.all_vcpus_at_entry = true;  // every vCPU's registers come from the file
  const SnapshotHeader& h = file.header();
  log::info(
      "restoring {}: {} of RAM, {} vCPU{}; {} stored in {} blocks ({} working set), "
      "{} file",
      file.path(), format_size(h.ram_bytes), h.vcpus, h.vcpus == 1 ? "" : "s",
      format_size(h.stored_pages * kSnapshotPageBytes), file.blocks(),
      format_size(h.working_set_pages * kSnapshotPageBytes), format_size(file.file_bytes()));
  SHOAL_TRY(build_devices(config), "devices");
  SHOAL_TRY(core_->map_for_boot(), "");  // the snapshot's slots exist already (create())
  SHOAL_TRY(core_->use_saved_cpuid(state->cpuid), file.path());
  SHOAL_TRY(create_vcpus(config), "");
  return queue_restore(*state);
}

Status Machine::pause_vcpus() {
  std::vector<int> ids;
  for (auto& v : core_->vcpus()) ids.push_back(v->backend().id());
  // Once the machine is ending, run() must be able to join whoever is pausing.
  return core_->pause_vcpus(ids, [this] { return outcome_.decided(); });
}

Result<SnapshotWriteStats> Machine::snapshot(const std::string& path, bool stay_paused,
                                             uint32_t working_set_ms) {
  if (!memory_->directory())
    return Error("snapshot: needs dormant guest memory (not --prefault or --fault-serving kernel)");
  const bool was_paused = paused_;
  std::vector<uint64_t> working_set;
  if (working_set_ms > 0) {
    if (was_paused) return Error("snapshot: a working set needs a running guest to watch");
    if (replica_) return Error("snapshot: a working set is not available with --replica yet");
    SHOAL_TRY(memory_->open_working_set_window(), "snapshot");
    std::this_thread::sleep_for(std::chrono::milliseconds(working_set_ms));
  }
  const uint64_t t0 = monotonic_ns();
  Status paused = was_paused ? Status{} : pause_vcpus();
  if (working_set_ms > 0) {
    auto ws = memory_->close_working_set_window();
    if (!ws && paused.ok()) paused = ws.error();
    if (ws) working_set = std::move(*ws);
  }
  if (!paused.ok()) {
    if (!was_paused) resume();
    return paused.error().context("snapshot");
  }
  auto resume_after = [&] {
    if (!was_paused && !stay_paused) resume();
    paused_ = was_paused || stay_paused;
  };
  paused_ = true;
  auto state = save_paused();
  if (!state) {
    resume_after();
    return state.error().context("snapshot");
  }
  if (Status s = memory_->finish_restore(); !s.ok()) {
    resume_after();
    return s.error().context("snapshot");
  }
  SnapshotInput in;
  in.ram = core_->ram().base();
  in.ram_bytes = core_->ram().size();
  in.directory = memory_->directory();
  in.vcpus = static_cast<uint32_t>(state->vcpus.size());
  in.state = encode_machine_state(*state);
  in.working_set = std::move(working_set);
  auto stats = write_snapshot(path, in);
  resume_after();
  if (!stats) return stats.error();
  ++snapshots_;
  log::info("snapshot {}: {} ({} pages stored, {} zero) in {:.1f} ms, the guest paused {}", path,
            format_size(stats->file_bytes), stats->stored_pages, stats->zero_pages,
            static_cast<double>(monotonic_ns() - t0) / 1e6,
            paused_ ? "(stays paused)" : "meanwhile");
  return stats;
}

ApiReply Machine::handle_api(const ApiRequest& r) {
  std::lock_guard lock(control_mu_);
  if (!vcpus_started_.load()) return ApiReply::failure("the guest is not running yet");
  if (outcome_.decided()) return ApiReply::failure("the guest has stopped");
  using C = ApiRequest::Command;
  switch (r.command) {
    case C::kPause:
      if (paused_) return ApiReply::failure("pause: already paused");
      if (Status s = pause_vcpus(); !s.ok()) return ApiReply::failure(s.error().message());
      paused_ = true;
      return ApiReply{}.with("state", std::string("paused"));
    case C::kResume:
      if (!paused_) return ApiReply::failure("resume: not paused");
      resume();
      paused_ = false;
      return ApiReply{}.with("state", std::string("running"));
    case C::kSnapshot: {
      auto s = snapshot(r.path, r.stop, r.working_set_ms);
      if (!s) return ApiReply::failure(s.error().message());
      return ApiReply{}
          .with("path", r.path)
          .with("file_bytes", s->file_bytes)
          .with("stored_pages", s->stored_pages)
          .with("zero_pages", s->zero_pages)
          .with("compressed_bytes", s->compressed_bytes)
          .with("working_set_pages", s->working_set_pages)
          .with("write_ms", static_cast<double>(s->scan_ns + s->write_ns) / 1e6)
          .with("state", std::string(paused_ ? "paused" : "running"));
    }
    case C::kQuit:
      // As a power-off would, paused or not: run() stops the vCPUs and returns 0.
      log::info("quit requested on the control API");
      finish(0, std::nullopt);
      return ApiReply{}.with("state", std::string("stopping"));
    case C::kMetrics:
      return ApiReply{}.with("metrics", metrics());
    case C::kStatus: {
      ApiReply reply;
      reply.with("state", std::string(paused_ ? "paused" : "running"))
          .with("vcpus", static_cast<uint64_t>(core_->vcpus().size()))
          .with("memory_bytes", core_->ram().size())
          .with("present_bytes", memory_->present_pages() * kPageSize)
          .with("uptime_ms", static_cast<double>(monotonic_ns() - run_started_ns_) / 1e6)
          .with("snapshots", snapshots_);
      if (replica_)
        reply.with("replica_checkpoints", replica_->checkpoints.load())
            .with("replica_last_pages", replica_->last_pages.load())
            .with("replica_last_pause_ms", static_cast<double>(replica_->last_pause_ns) / 1e6)
            .with("replica_last_write_ms", static_cast<double>(replica_->last_write_ns) / 1e6);
      if (const SnapshotSource* src = memory_->restore_source())
        reply.with("restore_blocks", src->blocks())
            .with("restore_blocks_loaded", src->blocks_loaded())
            .with("restore_done", src->blocks_loaded() == src->blocks());
      return reply;
    }
  }
  return ApiReply::failure("unknown command");
}

// Prometheus text exposition format, version 0.0.4.
std::string Machine::metrics() const {
  std::ostringstream m;
  auto gauge = [&](const char* name, const char* help, double v, const char* type = "gauge") {
    append_metric(m, name, help, v, type);
  };
  gauge("shoal_vcpus", "vCPUs of the guest", static_cast<double>(core_->vcpus().size()));
  gauge("shoal_paused", "1 while the guest is paused", paused_ ? 1 : 0);
  gauge("shoal_guest_memory_bytes", "guest RAM declared", static_cast<double>(core_->ram().size()));
  gauge("shoal_guest_present_bytes", "guest RAM mapped on this host",
        static_cast<double>(memory_->present_pages() * kPageSize));
  uint64_t exits = 0;
  for (const auto& v : core_->vcpus()) exits += v->exit_count();
  gauge("shoal_vcpu_exits_total", "VM exits handled, all vCPUs", static_cast<double>(exits),
        "counter");
  gauge("shoal_snapshots_total", "snapshots written", static_cast<double>(snapshots_), "counter");
  if (const SnapshotSource* src = memory_->restore_source()) {
    gauge("shoal_restore_blocks", "snapshot blocks to load", static_cast<double>(src->blocks()));
    gauge("shoal_restore_blocks_loaded", "snapshot blocks loaded",
          static_cast<double>(src->blocks_loaded()));
    gauge("shoal_restore_faults_total", "faults served from the snapshot file",
          static_cast<double>(src->stats().faults.load()), "counter");
  }
  return m.str();
}

}  // namespace shoal

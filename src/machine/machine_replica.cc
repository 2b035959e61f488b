// Machine's side of --replica (machine/replica_runner.hpp, docs/snapshot.md "Fast restart").
#include <sys/mman.h>

#include <cstring>

#include "machine/machine.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"

namespace shoal {

Status Machine::start_replica(const RunConfig& config) {
  if (config.replica_dir.empty()) return {};
  if (!memory_->directory())
    return Error("--replica needs dormant guest memory (not --prefault or --fault-serving kernel)");
  auto r =
      ReplicaRunner::create(config.replica_dir, config.replica_interval_ms, core_->ram().size());
  if (!r) return r.error();
  replica_ = std::move(*r);
  return {};
}

Status Machine::replica_checkpoint() {
  ReplicaRunner& r = *replica_;
  std::vector<uint64_t> pages;
  MachineState state;
  const uint64_t t0 = monotonic_ns();
  {
    std::lock_guard lock(control_mu_);
    if (outcome_.decided()) return {};
    const bool was_paused = paused_;
    // A pause fails only as the machine ends (a vCPU stopped: the guest powered off or
    // failed, and run()'s outcome says which): no checkpoint then, and no error of ours.
    if (!was_paused && !pause_vcpus().ok()) return {};
    Status s = [&]() -> Status {
      // With the vCPUs paused: which pages changed, the machine's state, and those pages'
      // contents into the shadow (mapped ones copied, dormant ones left zero there).
      if (r.first) {
        pages = memory_->mapped_pages();
        SHOAL_TRY(memory_->open_working_set_window(), "");
        r.first = false;
      } else {
        auto changed = memory_->rotate_working_set_window();
        if (!changed) return changed.error();
        pages = std::move(*changed);
      }
      auto saved = save_paused();
      if (!saved) return saved.error();
      state = std::move(*saved);
      // A dormant page is zero in the guest; the shadow may still hold an older copy of it.
      const PageDirectory& dir = *memory_->directory();
      for (uint64_t p : pages) {
        uint8_t* to = r.shadow() + p * kPageSize;
        if (dir.state(p) != PageState::kDormant) {
          std::memcpy(to, core_->ram().base() + p * kPageSize, kPageSize);
        } else {
          std::memset(to, 0, kPageSize);
        }
      }
      return {};
    }();
    if (!was_paused) resume();
    if (!s.ok()) return s.error().context("checkpoint");
  }
  const uint64_t t1 = monotonic_ns();
  SnapshotInput in;
  in.ram = r.shadow();
  in.ram_bytes = r.ram_bytes();
  in.pages = &pages;
  in.vcpus = static_cast<uint32_t>(state.vcpus.size());
  in.state = encode_machine_state(state);
  auto stats = r.store().commit(in);
  // The shadow keeps its pages: emptying it made every checkpoint's copy fault each page in
  // again (~7 us a page here, most of a 1 GiB checkpoint's pause), and each madvise() flushes
  // the TLBs of every CPU running this process, the vCPUs' included. So a replica costs up
  // to one more copy of the pages the guest writes.
  if (!stats) return stats.error();
  r.checkpoints++;
  r.last_pages = pages.size();
  r.last_pause_ns = t1 - t0;
  r.last_write_ns = monotonic_ns() - t1;
  log::debug("replica: checkpoint {}: {} pages, guest paused {:.2f} ms, written in {:.1f} ms",
             r.checkpoints.load(), pages.size(), static_cast<double>(t1 - t0) / 1e6,
             static_cast<double>(r.last_write_ns.load()) / 1e6);
  return {};
}

}  // namespace shoal

// Guest RAM that stays dormant until touched: ties together the userfaultfd, the page
// directory, the per-host zero pool and the fault server for one GuestRam mapping. Also the
// two comparison modes: the kernel's own first touch (what QEMU/Firecracker do) and prefault.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <string>

#include "arch/guest_ram.hpp"
#include "memory/fault_server.hpp"
#include "memory/page_directory.hpp"
#include "memory/snapshot_file.hpp"
#include "memory/snapshot_source.hpp"
#include "memory/userfaultfd.hpp"
#include "memory/working_set.hpp"
#include "memory/zero_pool.hpp"

namespace shoal {

enum class MemoryBacking {
  kDormant,   // userfaultfd + zero pool (default)
  kKernel,    // no userfaultfd: the kernel zero-fills on first touch
  kPrefault,  // MADV_POPULATE_WRITE everything before the guest starts
};

struct MemoryOptions {
  MemoryBacking backing = MemoryBacking::kDormant;
  FaultServing serving = FaultServing::kBatch;
  uint64_t pool_bytes = 64ull << 20;
  uint64_t budget_bytes = 0;        // 0: none
  bool wait_for_full_pool = false;  // start the guest only once the zero pool is full
  // A restore: the pages this snapshot stores are served from it (memory/snapshot_source.hpp),
  // lazily and by a background loader, or all before the guest starts with `restore_eager`.
  std::shared_ptr<const SnapshotFile> restore_from;
  bool restore_eager = false;
  bool restore_direct = false;  // the loader reads around the page cache (O_DIRECT)
  // Called by the background loader as it goes (SnapshotSource::Progress), every 500 ms and
  // once all is in.
  std::function<void(uint64_t loaded, uint64_t blocks, bool done)> restore_progress;
  // Instead of the snapshot's blocks: guest RAM is this raw image of it, mapped MAP_PRIVATE,
  // and the kernel pages it in (Cloud Hypervisor's way; bench/restore compares against it).
  std::string restore_image;
};

class GuestMemoryManager {
 public:
  // Sets `ram` up per `options`; for kDormant the fault server runs before this returns, so
  // even the VMM's own writes (kernel loading) are served from the pool. `on_fatal` is called
  // from the fault server thread when a fault cannot be served.
  static Result<std::unique_ptr<GuestMemoryManager>> create(
      const GuestRam& ram, const MemoryOptions& options,
      std::function<void(const Error&)> on_fatal);
  ~GuestMemoryManager();

  // Starts filling the zero pool; call once the vCPUs run. Until then first touches (the
  // loader's) are served by copying zeros, so start-up does not share the CPUs with the fill.
  Status start_background();

  // Gives [host, host + bytes) of guest RAM back: afterwards it reads as zero, and for
  // dormant memory it is dormant again (the next touch is a first touch).
  Status discard(uint8_t* host, uint64_t bytes);
  // Nanoseconds the fault server has been stuck on one fault (0 when idle or not dormant).
  uint64_t stuck_ns() const {
    const uint64_t fault = server_ ? server_->busy_ns() : 0;
    const uint64_t loader = snapshot_ ? snapshot_->busy_ns() : 0;
    return std::max(fault, loader);
  }
  uint64_t present_pages() const { return directory_ ? directory_->present_pages() : 0; }
  // Which pages are mapped, for a snapshot; null unless memory is dormant.
  const PageDirectory* directory() const { return directory_.get(); }
  // The restore's page source, or null when this guest was not restored.
  const SnapshotSource* restore_source() const { return snapshot_.get(); }
  // Installs what a restore has not loaded yet (before a snapshot: the page directory must
  // know every page the guest has). Returns at once when this guest was not restored.
  Status finish_restore() { return snapshot_ ? snapshot_->load_all() : Status{}; }
  // The working set's window (memory/working_set.hpp): opened while the guest runs, closed
  // once it is paused, giving the pages touched in between. Dormant memory only.
  Status open_working_set_window();
  Result<std::vector<uint64_t>> close_working_set_window();
  // With the guest paused: the pages touched since the window opened or last rotated, and a
  // new window from here (a replica's intervals).
  Result<std::vector<uint64_t>> rotate_working_set_window();
  // Every mapped guest page, in order (a replica's first checkpoint).
  std::vector<uint64_t> mapped_pages() const;
  // Stops serving faults: the counters are final afterwards. A vCPU still waiting on a fault
  // the server will never serve (it failed, or the machine is stopping) is released: with
  // hardware paging KVM waits for guest-memory faults in the kernel, where only a fatal
  // signal, not the vCPU kick, ends the wait. So guest RAM leaves userfaultfd, the kernel wakes
  // the waiters, and from then on it serves touches itself (the machine is stopping anyway).
  void stop_serving();
  // Counters for --stats, one "name: value" per line.
  std::string stats_report() const;

 private:
  GuestMemoryManager() = default;

  MemoryOptions options_;
  uint8_t* ram_base_ = nullptr;
  uint64_t ram_bytes_ = 0;
  bool released_ = false;  // guest RAM unregistered from userfaultfd
  std::unique_ptr<Userfaultfd> uffd_;
  std::unique_ptr<PageDirectory> directory_;
  std::unique_ptr<ZeroPool> pool_;
  std::unique_ptr<SnapshotSource> snapshot_;        // before server_: the server calls it
  std::unique_ptr<WorkingSetTracker> working_set_;  // likewise
  std::unique_ptr<FaultServer> server_;
};

}  // namespace shoal

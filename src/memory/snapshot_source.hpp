// The page source for a lazy restore (memory/page_source.hpp): pages a snapshot file stores
// are served from it, a whole block at a time. A fault on a stored page reads its block,
// checks and decompresses it, and installs every page of it that is still missing (UFFDIO_COPY
// of each run of consecutive guest pages, which also wakes the vCPUs waiting there). Zero and
// dormant pages are not this source's: the zero pool serves them (gate() keeps it off stored
// pages). A background loader maps the zero extents to the kernel's zero page, then installs
// the blocks in file order, which puts the working set first, so that the guest soon stops
// faulting at all.
//
// Each block is loaded once: a per-block state, claimed with compare-and-swap by whichever of
// the fault thread and the loader gets there first. A fault on a block the loader is
// installing needs nothing more: the loader's copy wakes the vCPU. A loader that fails calls
// `on_fatal` (the machine stops with its error); one that hangs shows in busy_ns(), which the
// machine's stuck-fault watchdog reads, so a lazy restore never leaves a vCPU waiting forever.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "memory/dormant_server.hpp"
#include "memory/page_directory.hpp"
#include "memory/page_source.hpp"
#include "memory/snapshot_file.hpp"
#include "memory/userfaultfd.hpp"

namespace shoal {

struct SnapshotLoadStats {
  std::atomic<uint64_t> blocks_by_fault{0};
  std::atomic<uint64_t> blocks_by_loader{0};
  std::atomic<uint64_t> pages_installed{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> eexist{0};
  std::atomic<uint64_t> zero_pages_mapped{0};  // zero extents, mapped to the shared zero page
  std::atomic<uint64_t> finished_ns{0};        // when the last block was in, 0 until then
  std::atomic<bool> direct{false};             // the loader reads with O_DIRECT
};

// How the background loader reads the file (memory/block_reader.hpp). bench/snapshot_load
// compares the ways: on the dev machine the loader is bound by decompressing and installing,
// so 8 reads in flight took 1.01-1.04x pread's time (the kernel's read-ahead already keeps the
// disk busy for a sequential pread), and O_DIRECT 1.4-1.5x; O_DIRECT is what leaves none of
// the file in the page cache (a cold 512 MiB guest's file: 0% of it cached after, not 100%).
// Reads ahead pay where each read waits long (network block storage, a small read_ahead_kb).
struct SnapshotLoaderConfig {
  unsigned depth = 8;   // block reads in flight on its io_uring (0: pread, one block at a time)
  bool direct = false;  // O_DIRECT (shoal run --restore-direct)
};

class SnapshotSource final : public PageSource {
 public:
  using Target = DormantServer::Target;

  SnapshotSource(const Userfaultfd& uffd, Target ram, PageDirectory& directory,
                 std::shared_ptr<const SnapshotFile> file,
                 std::function<void(const Error&)> on_fatal, SnapshotLoaderConfig loader = {});
  SnapshotSource(const SnapshotSource&) = delete;
  SnapshotSource& operator=(const SnapshotSource&) = delete;
  ~SnapshotSource() override;

  const char* name() const override { return "snapshot file"; }
  // Whether `page` is stored in the file and its block not yet installed: its faults come
  // here, never to the zero pool. Once installed, the page is the guest's like any other (a
  // discard makes it dormant, and the zero pool serves it next).
  bool pending(uint64_t page) const;
  // For the dormant server: the pages it may serve (all but the pending ones).
  DormantGate gate() const;
  // Installs the blocks holding stored pages of [first, first + count) and returns once they
  // are in, whoever loads them: a discard calls it first, so that a block installed later
  // cannot bring back what the guest discarded. Any thread.
  Status load_pages(uint64_t first, uint64_t count);
  Status serve_fault(uint64_t page, Access access) override;

  // Installs every block not yet in, on the calling thread, and waits for those another thread
  // is installing: an eager restore, and a snapshot of a guest still being restored.
  Status load_all();
  // What the loader reports as it goes: blocks in so far, of how many; `done` once all are in
  // (whoever loaded them). At most one report per `every`, and the last; on its thread.
  using Progress = std::function<void(uint64_t loaded, uint64_t blocks, bool done)>;
  void set_progress(Progress progress, uint64_t every_ns) {
    progress_ = std::move(progress);
    progress_every_ns_ = every_ns;
  }
  // Starts the background loader (a thread); stop() ends it.
  Status start_loader();
  void stop();
  // How long the loader has been busy with one block, 0 when idle or done.
  uint64_t busy_ns() const;
  uint64_t blocks() const { return file_->blocks(); }
  uint64_t blocks_loaded() const { return loaded_.load(std::memory_order_relaxed); }
  const SnapshotLoadStats& stats() const { return stats_; }

 private:
  // kFailed: a load of the block failed (its error went to on_fatal, the machine stops); a
  // fault on it is an error from then on, never a wait for a loader that will not come.
  enum BlockState : uint8_t { kUnloaded = 0, kLoading = 1, kLoaded = 2, kFailed = 3 };
  // Claims block `b` (false: another thread has it) and installs it.
  Result<bool> load_block(uint64_t b, std::vector<uint8_t>& buffer, std::vector<uint8_t>& scratch);
  bool claim(uint64_t b);
  void mark_failed(uint64_t b);
  // Installs claimed block `b` from its decoded `pages`, or (`read` failed) marks it failed
  // and stops the machine; either way the block is settled.
  Status finish_block(uint64_t b, Status read, std::span<const uint8_t> pages);
  // The loader with reads ahead on an io_uring; kNoRing if the ring could not be set up (the
  // loader then reads one block at a time).
  enum class AheadResult { kNoRing, kRan, kFailed };
  // `background`: on the loader's thread (its busy time and progress), not load_all's.
  AheadResult load_ahead(std::vector<uint8_t>& buffer, bool background);
  void report_progress(uint64_t& reported_ns);
  // Loads block `b` unless it is in, or waits until the thread loading it is done.
  Status ensure_block(uint64_t b, std::vector<uint8_t>& buffer, std::vector<uint8_t>& scratch);
  // Maps every zero extent to the kernel's zero page (those the zero pool has not served).
  Status install_zero_extents();
  Status install(uint64_t page, const uint8_t* from, uint64_t count);
  void loader_loop();
  uint64_t addr(uint64_t page) const { return reinterpret_cast<uint64_t>(ram_.base) + page * 4096; }

  const Userfaultfd& uffd_;
  Target ram_;
  PageDirectory& dir_;
  std::shared_ptr<const SnapshotFile> file_;
  std::function<void(const Error&)> on_fatal_;
  SnapshotLoaderConfig loader_config_;
  Progress progress_;
  uint64_t progress_every_ns_ = 0;
  std::unique_ptr<std::atomic<uint8_t>[]> state_;
  std::atomic<uint64_t> loaded_{0};
  std::vector<uint8_t> fault_buffer_, fault_scratch_;  // the fault thread's
  std::atomic<bool> stop_{false};
  std::atomic<bool> zeros_claimed_{false};  // install_zero_extents runs once
  std::atomic<uint64_t> loader_busy_since_{0};
  std::thread loader_;
  uint64_t started_ns_ = 0;
  SnapshotLoadStats stats_;
};

}  // namespace shoal

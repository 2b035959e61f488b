#include "memory/memory_manager.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include "shoal/log.hpp"
#include "shoal/size.hpp"
#include "shoal/unique_fd.hpp"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace shoal {

Result<std::unique_ptr<GuestMemoryManager>> GuestMemoryManager::create(
    const GuestRam& ram, const MemoryOptions& options, std::function<void(const Error&)> on_fatal) {
  std::unique_ptr<GuestMemoryManager> m(new GuestMemoryManager());
  m->options_ = options;
  m->ram_base_ = ram.base();
  m->ram_bytes_ = ram.size();
  if (options.budget_bytes != 0 && options.budget_bytes < ram.size() &&
      options.backing == MemoryBacking::kPrefault)
    return Error("--prefault populates all " + format_size(ram.size()) +
                 " of guest memory, more than --memory-budget " +
                 format_size(options.budget_bytes));
  if (options.backing == MemoryBacking::kPrefault) {
    if (options.restore_from) return Error("a restore needs dormant guest memory, not --prefault");
    if (madvise(ram.base(), ram.size(), MADV_POPULATE_WRITE) < 0)
      return errno_error("prefault guest memory (MADV_POPULATE_WRITE)");
    return m;
  }
  if (!options.restore_image.empty()) {
    // Over the reservation, same address: GuestRam still owns (and unmaps) the range.
    UniqueFd fd(::open(options.restore_image.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return errno_error("--restore-image " + options.restore_image);
    struct stat st {};
    if (fstat(fd.get(), &st) < 0) return errno_error("--restore-image: fstat");
    if (static_cast<uint64_t>(st.st_size) != ram.size())
      return Error("--restore-image " + options.restore_image + ": " + std::to_string(st.st_size) +
                   " bytes, the snapshot's guest has " + std::to_string(ram.size()));
    if (mmap(ram.base(), ram.size(), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd.get(), 0) == MAP_FAILED)
      return errno_error("--restore-image: mmap");
    m->options_.backing = MemoryBacking::kKernel;
    return m;
  }
  if (options.backing == MemoryBacking::kKernel) {
    if (options.restore_from)
      return Error("a restore needs dormant guest memory, not --fault-serving kernel");
    return m;
  }

  // 4 KiB pages throughout: a THP in the guest mapping would be half-served by the kernel.
  if (madvise(ram.base(), ram.size(), MADV_NOHUGEPAGE) < 0)
    return errno_error("guest memory: MADV_NOHUGEPAGE");
  auto uffd = Userfaultfd::open(options.serving != FaultServing::kSingleCopy);
  if (!uffd) return uffd.error();
  m->uffd_ = std::make_unique<Userfaultfd>(std::move(*uffd));
  // MISSING faults serve first touches; WP faults are only ever raised by a working set's
  // window (a snapshot's), which write-protects the mapped pages while it is open.
  SHOAL_TRY(m->uffd_->register_missing_wp(ram.base(), ram.size()), "guest memory");
  auto dir = PageDirectory::create(ram.size() / kPageSize);
  if (!dir) return dir.error();
  m->directory_ = std::make_unique<PageDirectory>(std::move(*dir));
  // Without UFFDIO_MOVE (Linux < 6.8) the server copies zeros and the pool has no use.
  if (options.serving != FaultServing::kSingleCopy && m->uffd_->has_move()) {
    ZeroPoolConfig pc;
    pc.bytes = options.pool_bytes;
    pc.budget_bytes = options.budget_bytes;
    pc.guest_present_pages = &m->directory_->present_counter();
    auto pool = ZeroPool::create(pc);
    if (!pool) return pool.error();
    m->pool_ = std::move(*pool);
    // Discarded guest pages come back through a quarter as many recycling chunks.
    SHOAL_TRY(m->pool_->enable_recycling(*m->uffd_, std::max<uint64_t>(2, m->pool_->chunks() / 4)),
              "zero pool");
    // Filling the pool shares the CPUs with everything start-up does, so it begins when the
    // vCPUs do (start_background); --zero-pool-ready asks for a full pool first instead.
    if (options.wait_for_full_pool) {
      SHOAL_TRY(m->pool_->start(), "zero pool");
      SHOAL_TRY(m->pool_->wait_until_full(), "zero pool");
    }
  }
  const FaultServer::Target target{ram.base(), ram.size()};
  if (options.restore_from) {
    if (options.restore_from->header().ram_bytes != ram.size())
      return Error("restore: the snapshot holds " +
                   format_size(options.restore_from->header().ram_bytes) + " of guest RAM, not " +
                   format_size(ram.size()));
    m->snapshot_ =
        std::make_unique<SnapshotSource>(*m->uffd_, target, *m->directory_, options.restore_from,
                                         on_fatal, SnapshotLoaderConfig{8, options.restore_direct});
    if (options.restore_progress) m->snapshot_->set_progress(options.restore_progress, 500'000'000);
  }
  auto tracker = WorkingSetTracker::create(*m->uffd_, target, *m->directory_);
  if (!tracker) return tracker.error();
  m->working_set_ = std::move(*tracker);
  m->server_ = std::make_unique<FaultServer>(
      *m->uffd_, target, *m->directory_, m->pool_.get(), options.serving, std::move(on_fatal),
      options.budget_bytes, m->snapshot_.get(), m->working_set_.get());
  SHOAL_TRY(m->server_->start(), "fault server");
  if (m->snapshot_ && options.restore_eager) SHOAL_TRY(m->snapshot_->load_all(), "eager restore");
  return m;
}

Status GuestMemoryManager::discard(uint8_t* host, uint64_t bytes) {
  if (reinterpret_cast<uint64_t>(host) % kPageSize != 0 || bytes % kPageSize != 0)
    return Error("discard: range is not page-aligned");
  // Zap first, then mark dormant. The other order races with a stale fault message for a
  // page in the range: served while still present, its UFFDIO_COPY/MOVE gets EEXIST and marks
  // it present again just before the zap, and the vCPU then re-faults on a missing page that
  // the directory calls present, forever. In this order a fault in between is only woken
  // early and comes back. KVM's MMU notifier drops its mappings of the pages with them.
  // Present pages go back to the pool first (moved, then re-zeroed off the fault path);
  // whatever does not fit there is zapped below (a no-op for pages already moved out).
  if (snapshot_) {
    const uint64_t first = static_cast<uint64_t>(host - ram_base_) / kPageSize;
    SHOAL_TRY(snapshot_->load_pages(first, bytes / kPageSize), "discard");
  }
  if (pool_ && directory_) {
    const uint64_t first = static_cast<uint64_t>(host - ram_base_) / kPageSize;
    const uint64_t end = first + bytes / kPageSize;
    for (uint64_t p = first; p < end;) {
      if (directory_->state(p) != PageState::kPresent) {
        ++p;
        continue;
      }
      uint64_t run_end = p;
      while (run_end < end && directory_->state(run_end) == PageState::kPresent) ++run_end;
      const uint64_t moved = pool_->recycle(ram_base_ + p * kPageSize, run_end - p);
      if (moved == 0) break;  // no room: zap the rest
      p += moved;
    }
  }
  if (madvise(host, bytes, MADV_DONTNEED) < 0) return errno_error("discard: MADV_DONTNEED");
  // An open window (a replica's) must learn of it: the replica then zeroes these pages too.
  if (working_set_ && working_set_->open()) {
    const uint64_t first = static_cast<uint64_t>(host - ram_base_) / kPageSize;
    working_set_->record_range(first, bytes / kPageSize);
  }
  if (directory_)
    directory_->set_range(static_cast<uint64_t>(host - ram_base_) / kPageSize, bytes / kPageSize,
                          PageState::kDormant);
  return {};
}

Status GuestMemoryManager::start_background() {
  if (pool_ && !pool_->started()) SHOAL_TRY(pool_->start(), "zero pool");
  if (snapshot_) SHOAL_TRY(snapshot_->start_loader(), "restore");
  return {};
}

void GuestMemoryManager::stop_serving() {
  if (snapshot_) snapshot_->stop();
  if (server_) server_->stop();
  if (uffd_ && !released_) {
    released_ = true;
    Status s = uffd_->unregister(ram_base_, ram_bytes_);
    if (!s.ok()) log::warn("guest memory: {}", s.error().message());
  }
}

Status GuestMemoryManager::open_working_set_window() {
  if (!working_set_) return Error("a working set needs dormant guest memory");
  return working_set_->open_window();
}

Result<std::vector<uint64_t>> GuestMemoryManager::close_working_set_window() {
  if (!working_set_) return Error("a working set needs dormant guest memory");
  return working_set_->close_window();
}

Result<std::vector<uint64_t>> GuestMemoryManager::rotate_working_set_window() {
  if (!working_set_) return Error("a working set needs dormant guest memory");
  return working_set_->rotate_window();
}

std::vector<uint64_t> GuestMemoryManager::mapped_pages() const {
  return directory_ ? directory_->mapped_pages() : std::vector<uint64_t>{};
}

GuestMemoryManager::~GuestMemoryManager() {
  // The server first: it takes from the pool and calls the snapshot source and the tracker.
  server_.reset();
  snapshot_.reset();
  working_set_.reset();
  pool_.reset();
}

std::string GuestMemoryManager::stats_report() const {
  std::ostringstream s;
  const char* backing = options_.backing == MemoryBacking::kKernel     ? "kernel first touch"
                        : options_.backing == MemoryBacking::kPrefault ? "prefaulted"
                                                                       : "dormant (userfaultfd)";
  s << "memory: " << backing << "\n";
  if (!server_) return s.str();
  const FaultServerStats& f = server_->stats();
  s << "faults: " << f.faults << " (" << f.duplicate_faults << " already served)\n"
    << "pages served: " << f.pages_served << " (" << f.pages_prefetched << " prefetched)\n";
  const uint64_t served_faults = f.faults - f.duplicate_faults;
  if (served_faults > 0) {
    s.precision(1);
    s << std::fixed << "pages per fault: "
      << static_cast<double>(f.pages_served) / static_cast<double>(served_faults) << "\n";
  }
  s << "batches (pages: faults):";
  for (size_t i = 0; i < f.batch_log2.size(); ++i)
    if (f.batch_log2[i] > 0) s << " " << (1u << i) << "+: " << f.batch_log2[i];
  s << "\nioctls: " << f.moves << " move, " << f.copies << " copy; " << f.eexist << " EEXIST, "
    << f.eagain << " EAGAIN, " << f.move_fallbacks << " move fallbacks, " << f.directory_repairs
    << " directory repairs\n";
  if (pool_) {
    const ZeroPoolStats& p = pool_->stats();
    s << "zero pool: " << pool_->chunks() << " chunks of 2 MiB, " << pool_->full_chunks()
      << " full now, lowest " << (p.min_full_chunks == ~uint64_t{0} ? 0 : p.min_full_chunks.load())
      << "\n"
      << "pool stalls: " << p.stalls << " (" << p.stall_ns / 1000 << " us); pages copied while "
      << "it was empty: " << f.pages_copied_pool_empty << "\n"
      << "pool refills: " << p.chunks_refilled << " chunks";
    if (p.chunks_refilled > 0) s << ", " << p.refill_ns / p.chunks_refilled / 1000 << " us each";
    s << "\n";
    s << "pages recycled: " << p.pages_recycled << "\n";
  }
  if (snapshot_) {
    const SnapshotLoadStats& r = snapshot_->stats();
    s << "restore: " << snapshot_->blocks_loaded() << " of " << snapshot_->blocks() << " blocks ("
      << r.blocks_by_fault << " on a fault, " << r.blocks_by_loader << " by the loader), "
      << r.pages_installed << " pages and " << r.zero_pages_mapped << " zero pages, "
      << r.bytes_read << " bytes read, " << r.faults << " faults";
    if (r.finished_ns > 0) s << ", all in after " << r.finished_ns / 1000000 << " ms";
    s << "\n";
  }
  s << "guest pages present: " << directory_->present_pages() << "\n";
  return s.str();
}

}  // namespace shoal

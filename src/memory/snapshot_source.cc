#include "memory/snapshot_source.hpp"

#include <pthread.h>

#include "memory/block_reader.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr uint64_t kPage = kSnapshotPageBytes;

}  // namespace

SnapshotSource::SnapshotSource(const Userfaultfd& uffd, Target ram, PageDirectory& directory,
                               std::shared_ptr<const SnapshotFile> file,
                               std::function<void(const Error&)> on_fatal,
                               SnapshotLoaderConfig loader)
    : uffd_(uffd),
      ram_(ram),
      dir_(directory),
      file_(std::move(file)),
      on_fatal_(std::move(on_fatal)),
      loader_config_(loader),
      state_(new std::atomic<uint8_t>[file_->blocks()]()),
      fault_buffer_(file_->header().block_bytes),
      started_ns_(monotonic_ns()) {}

SnapshotSource::~SnapshotSource() {
  stop();
}

bool SnapshotSource::pending(uint64_t page) const {
  const auto slot = file_->slot_of(page);
  return slot && state_[file_->block_of_slot(*slot)].load(std::memory_order_acquire) != kLoaded;
}

DormantGate SnapshotSource::gate() const {
  return DormantGate{[this](uint64_t page) { return !pending(page); }, nullptr};
}

Status SnapshotSource::ensure_block(uint64_t b, std::vector<uint8_t>& buffer,
                                    std::vector<uint8_t>& scratch) {
  if (buffer.empty()) buffer.resize(file_->header().block_bytes);
  auto claimed = load_block(b, buffer, scratch);
  if (!claimed) return claimed.error();
  if (*claimed) ++stats_.blocks_by_loader;
  // Another thread is installing it: wait until it is in (one block read, ~a millisecond).
  while (state_[b].load(std::memory_order_acquire) != kLoaded) {
    if (state_[b].load(std::memory_order_acquire) == kFailed)
      return Error("snapshot block " + std::to_string(b) + " failed to load");
    if (stop_.load(std::memory_order_relaxed)) return Error("snapshot restore stopped");
    std::this_thread::yield();
  }
  return {};
}

Status SnapshotSource::load_pages(uint64_t first, uint64_t count) {
  std::vector<uint8_t> buffer, scratch;
  uint64_t last_block = ~uint64_t{0};
  for (uint64_t p = first; p < first + count; ++p) {
    const auto slot = file_->slot_of(p);
    if (!slot || file_->block_of_slot(*slot) == last_block) continue;
    last_block = file_->block_of_slot(*slot);
    SHOAL_TRY(ensure_block(last_block, buffer, scratch), "");
  }
  return {};
}

Status SnapshotSource::install_zero_extents() {
  for (const PageExtent& e : file_->index().extents) {
    if (e.kind != PageClass::kZero) continue;
    if (stop_.load(std::memory_order_relaxed)) return {};
    uint64_t done_pages = 0;
    while (done_pages < e.pages) {
      int64_t done = 0;
      const uint64_t page = e.first_page + done_pages;
      const int rc = uffd_.zeropage(addr(page), (e.pages - done_pages) * kPage, &done);
      const uint64_t mapped = done > 0 ? static_cast<uint64_t>(done) / kPage : 0;
      if (mapped > 0) {
        dir_.set_range(page, mapped, PageState::kPresent);
        stats_.zero_pages_mapped += mapped;
        done_pages += mapped;
      }
      if (rc == 0 || rc == -EAGAIN) continue;
      if (rc == -EEXIST) {  // the zero pool served a fault there first
        dir_.set_range(e.first_page + done_pages, 1, PageState::kPresent);
        ++done_pages;
        continue;
      }
      return errno_error("UFFDIO_ZEROPAGE", -rc);
    }
  }
  return {};
}

Status SnapshotSource::install(uint64_t page, const uint8_t* from, uint64_t count) {
  uint64_t done_pages = 0;
  while (done_pages < count) {
    int64_t done = 0;
    const int rc =
        uffd_.copy(addr(page + done_pages), reinterpret_cast<uint64_t>(from + done_pages * kPage),
                   (count - done_pages) * kPage, &done);
    const uint64_t copied = done > 0 ? static_cast<uint64_t>(done) / kPage : 0;
    if (copied > 0) {
      dir_.set_range(page + done_pages, copied, PageState::kPresent);
      stats_.pages_installed += copied;
      done_pages += copied;
    }
    if (rc == 0 || rc == -EAGAIN) continue;
    if (rc == -EEXIST) {
      // Mapped already: nothing else serves stored pages, so only a discard racing the
      // restore gets here, and the page's newer contents win. Wake whoever waits on it.
      ++stats_.eexist;
      dir_.set_range(page + done_pages, 1, PageState::kPresent);
      (void)uffd_.wake(addr(page + done_pages), kPage);
      ++done_pages;
      continue;
    }
    return errno_error("UFFDIO_COPY", -rc);
  }
  return {};
}

void SnapshotSource::mark_failed(uint64_t b) {
  state_[b].store(kFailed, std::memory_order_release);
  // vCPUs already asleep on its pages (a fault on a block being loaded waits for the copy):
  // woken, each faults again and finds the block failed.
  file_->for_each_run(b, [&](uint64_t page, uint64_t, uint64_t count) {
    (void)uffd_.wake(addr(page), count * kPage);
  });
}

bool SnapshotSource::claim(uint64_t b) {
  uint8_t expected = kUnloaded;
  return state_[b].compare_exchange_strong(expected, kLoading, std::memory_order_acq_rel);
}

Result<bool> SnapshotSource::load_block(uint64_t b, std::vector<uint8_t>& buffer,
                                        std::vector<uint8_t>& scratch) {
  if (!claim(b)) return false;
  SHOAL_TRY(finish_block(b, file_->read_block(b, buffer, scratch), buffer), "");
  return true;
}

Status SnapshotSource::finish_block(uint64_t b, Status read, std::span<const uint8_t> pages) {
  Status s = std::move(read);
  if (s.ok()) {
    stats_.bytes_read += file_->index().blocks[b].stored_bytes;
    file_->for_each_run(b, [&](uint64_t page, uint64_t at, uint64_t count) {
      if (s.ok()) s = install(page, pages.data() + at * kPage, count);
    });
    if (!s.ok()) s = s.error().context("install snapshot block " + std::to_string(b));
  }
  if (!s.ok()) {
    // Whoever loads it (the loader, a fault, a discard on a vCPU thread), the machine stops.
    // Told before the block reads as failed: a fault that finds it failed (and fails) may not
    // overtake the reason (on_fatal only records the outcome; it does not wait on faults).
    on_fatal_(s.error().context("snapshot " + file_->path()));
    mark_failed(b);
    return s;
  }
  state_[b].store(kLoaded, std::memory_order_release);
  if (loaded_.fetch_add(1, std::memory_order_acq_rel) + 1 == file_->blocks())
    stats_.finished_ns = monotonic_ns() - started_ns_;
  return {};
}

Status SnapshotSource::serve_fault(uint64_t page, Access /*access*/) {
  ++stats_.faults;
  const auto slot = file_->slot_of(page);
  if (!slot) return Error("page " + std::to_string(page) + " is not in the snapshot");
  const uint64_t b = file_->block_of_slot(*slot);
  switch (state_[b].load(std::memory_order_acquire)) {
    case kLoading:
      return {};  // the loader's UFFDIO_COPY wakes this vCPU
    case kFailed:
      return Error("snapshot block " + std::to_string(b) + " failed to load");
    case kLoaded: {
      const int rc = uffd_.wake(addr(page), kPage);  // a fault that raced the install
      return rc == 0 ? Status{} : errno_error("UFFDIO_WAKE", -rc);
    }
    default:
      break;
  }
  auto claimed = load_block(b, fault_buffer_, fault_scratch_);
  if (!claimed) return claimed.error();
  if (*claimed) ++stats_.blocks_by_fault;
  return {};
}

Status SnapshotSource::load_all() {
  if (!zeros_claimed_.exchange(true)) SHOAL_TRY(install_zero_extents(), "zero pages");
  if (blocks_loaded() == file_->blocks()) return {};  // a snapshot of a guest restored long ago
  std::vector<uint8_t> buffer(file_->header().block_bytes), scratch;
  // Reading ahead as the background loader does; then waiting for blocks others claimed.
  if (loader_config_.depth > 0 && load_ahead(buffer, false) == AheadResult::kFailed)
    return Error("snapshot " + file_->path() + ": a block failed to load");
  for (uint64_t b = 0; b < file_->blocks(); ++b) SHOAL_TRY(ensure_block(b, buffer, scratch), "");
  return {};
}

Status SnapshotSource::start_loader() {
  if (loader_.joinable() || file_->blocks() == 0) return {};
  loader_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "snapshot-load");
    loader_loop();
  });
  return {};
}

void SnapshotSource::report_progress(uint64_t& reported_ns) {
  if (progress_ && monotonic_ns() - reported_ns >= progress_every_ns_) {
    reported_ns = monotonic_ns();
    progress_(blocks_loaded(), file_->blocks(), false);
  }
}

SnapshotSource::AheadResult SnapshotSource::load_ahead(std::vector<uint8_t>& buffer,
                                                       bool background) {
  const bool direct = loader_config_.direct;
  auto made = BlockReader::create(*file_, loader_config_.depth, direct);
  if (!made) {
    log::warn("snapshot loader: {}; reading one block at a time", made.error().message());
    return AheadResult::kNoRing;
  }
  BlockReader& reader = **made;
  stats_.direct = direct;
  uint64_t reported_ns = monotonic_ns(), next = 0;
  std::vector<uint64_t> claimed;  // read or being read here, not yet settled
  // Only the background loader's time counts for the watchdog (busy_ns), and only it reports
  // progress: load_all on another thread would hide a stuck loader and print lines twice.
  auto busy = [&](uint64_t since) {
    if (background) loader_busy_since_.store(since, std::memory_order_relaxed);
  };
  // Blocks claimed here must not stay "loading" when the loader gives up: a fault on one
  // would wait for nobody. Faults already waiting on them are woken to find them failed.
  auto settle = [&] {
    busy(0);
    for (uint64_t b : claimed) mark_failed(b);
  };
  auto give_up = [&](const Error& e) {
    on_fatal_(e.context("snapshot loader (" + file_->path() + ")"));  // first, as in finish_block
    settle();
    return AheadResult::kFailed;
  };
  while (!stop_.load(std::memory_order_relaxed)) {
    // Claim the next blocks nobody has (in file order: the working set first) and start their
    // reads, up to the depth; a fault may have claimed some already.
    while (reader.can_submit() && next < file_->blocks()) {
      const uint64_t b = next++;
      if (!claim(b)) continue;
      claimed.push_back(b);
      if (Status s = reader.submit(b); !s.ok()) return give_up(s.error());
    }
    if (reader.in_flight() == 0) break;
    busy(monotonic_ns());
    auto done = reader.wait_one();
    if (!done) return give_up(done.error());
    Status s = done->read.ok() ? file_->decode_block(done->block, done->stored, buffer)
                               : std::move(done->read);
    reader.release(*done);
    std::erase(claimed, done->block);
    const bool ok = finish_block(done->block, std::move(s), buffer).ok();
    busy(0);
    if (!ok) {  // finish_block told on_fatal
      settle();
      return AheadResult::kFailed;
    }
    ++stats_.blocks_by_loader;
    stats_.direct = reader.direct();  // false once the file system refused O_DIRECT
    if (background) report_progress(reported_ns);
  }
  return AheadResult::kRan;
}

void SnapshotSource::loader_loop() {
  // The zero pages first: no reads, a few microseconds an extent, and the guest had every one
  // of them mapped when it was saved (left to faults, each would cost one, the zero and data
  // pages of a guest often alternating page by page).
  if (!zeros_claimed_.exchange(true))
    if (Status s = install_zero_extents(); !s.ok()) {
      on_fatal_(s.error().context("snapshot loader (" + file_->path() + "): zero pages"));
      return;
    }
  std::vector<uint8_t> buffer(file_->header().block_bytes), scratch;
  const AheadResult ahead =
      loader_config_.depth == 0 ? AheadResult::kNoRing : load_ahead(buffer, true);
  if (ahead == AheadResult::kFailed) return;
  if (ahead == AheadResult::kNoRing) {
    uint64_t reported_ns = monotonic_ns();
    for (uint64_t b = 0; b < file_->blocks() && !stop_.load(std::memory_order_relaxed); ++b) {
      loader_busy_since_.store(monotonic_ns(), std::memory_order_relaxed);
      auto claimed = load_block(b, buffer, scratch);
      loader_busy_since_.store(0, std::memory_order_relaxed);
      if (!claimed) return;  // load_block told on_fatal
      if (*claimed) ++stats_.blocks_by_loader;
      report_progress(reported_ns);
    }
  }
  // Every block is claimed now; those faults claimed may still be installing.
  if (progress_ && !stop_.load(std::memory_order_relaxed)) {
    for (uint64_t b = 0; b < file_->blocks(); ++b)
      if (!ensure_block(b, buffer, scratch).ok()) return;
    progress_(blocks_loaded(), file_->blocks(), true);
  }
}

void SnapshotSource::stop() {
  stop_.store(true, std::memory_order_relaxed);
  if (loader_.joinable()) loader_.join();
}

uint64_t SnapshotSource::busy_ns() const {
  const uint64_t since = loader_busy_since_.load(std::memory_order_relaxed);
  return since == 0 ? 0 : monotonic_ns() - since;
}

}  // namespace shoal

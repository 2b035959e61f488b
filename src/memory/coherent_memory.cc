#include "memory/coherent_memory.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "memory/thread_halt.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr size_t kMaxEvents = 64;
// What UFFDIO_COPY installs for a zero page when the pool cannot give one.
alignas(4096) const std::array<uint8_t, CoherentMemory::kPageBytes> kZeroPage{};
constexpr size_t kMaxLatencySamples = 1 << 20;

void signal_eventfd(int fd) {
  const uint64_t one = 1;
  while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void drain_eventfd(int fd) {
  uint64_t v;
  while (::read(fd, &v, sizeof v) < 0 && errno == EINTR) {
  }
}

}  // namespace

// What the protocol's messages mean for this host's mapping, over userfaultfd.
class CoherentMemory::UffdPages : public LocalPages {
 public:
  explicit UffdPages(CoherentMemory& m) : m_(m) {}

  void install(uint64_t page, Access access, CoherenceMessage::Payload payload,
               const PageBytes& data) override {
    const uint64_t a = m_.addr(page);
    int rc = 0;
    if (payload == CoherenceMessage::Payload::kNone) {
      // An upgrade of the copy already mapped: lifting the protection also wakes the writer.
      rc = access == Access::kWrite ? m_.uffd_.write_protect(a, kPageBytes, false)
                                    : m_.uffd_.wake(a, kPageBytes);
      if (rc != 0) m_.fail(errno_error("install page: UFFDIO_WRITEPROTECT", -rc));
      return;
    }
    if (!m_.budget_allows_one_more()) return;
    const bool read_only = access != Access::kWrite;
    // A zero grant is copied from a static zero page, not moved in from the pool: a
    // one-page UFFDIO_MOVE flushes the pool mapping's TLB on every CPU (an IPI per page, most
    // of a remotely homed first touch's cost on this nested host: 30 -> 9-15 us per page in
    // bench/remote_faults). The pool serves this host's own dormant pages, in batches.
    const uint8_t* src = payload == CoherenceMessage::Payload::kData && data.size() == kPageBytes
                             ? data.data()
                             : kZeroPage.data();
    int64_t done = 0;
    rc = m_.uffd_.copy(a, reinterpret_cast<uint64_t>(src), kPageBytes, &done, read_only);
    if (rc == -EEXIST) {
      // The protocol says this host has no copy, so whatever is mapped is stale: zap it and
      // put the granted contents in its place.
      madvise(m_.base_ + page * kPageBytes, kPageBytes, MADV_DONTNEED);
      rc = m_.uffd_.copy(a, reinterpret_cast<uint64_t>(src), kPageBytes, &done, read_only);
    }
    if (rc != 0) m_.fail(errno_error("install page " + format_hex(page) + ": UFFDIO_COPY", -rc));
  }

  PageBytes write_protect_and_read(uint64_t page) override {
    const uint64_t a = m_.addr(page);
    // Protect first: the ioctl returns once no CPU (and no KVM mapping) can still write, so
    // the copy below is the page's final contents until it comes back.
    const int rc = m_.uffd_.write_protect(a, kPageBytes, true);
    if (rc != 0) m_.fail(errno_error("give up page: UFFDIO_WRITEPROTECT", -rc));
    return read(page);
  }

  // A page that is still all zeros (one a batch claimed but the guest never wrote, say)
  // travels as "zero": no page on the wire.
  PageBytes read(uint64_t page) override {
    // Only called for a copy this host holds read-only: nothing writes it while it is read.
    PageBytes out(kPageBytes);
    std::memcpy(out.data(), m_.base_ + page * kPageBytes, kPageBytes);
    if (std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0; })) out.clear();
    return out;
  }

  void drop(uint64_t page) override {
    ++m_.stats_.pages_given_up;
    // With the remote-fault line below: which pages ping-pong between hosts (`node --log-level
    // trace`; the page number times 4 KiB is the offset in guest RAM, the guest-physical
    // address below the 32-bit PCI hole).
    log::trace("page {:#x} given up", page * kPageBytes);
    uint8_t* p = m_.base_ + page * kPageBytes;
    // Back into the pool when there is room (it is re-zeroed there); else the kernel frees it.
    if (m_.pool_->recycle(p, 1) == 1) return;
    madvise(p, kPageBytes, MADV_DONTNEED);
  }

 private:
  CoherentMemory& m_;
};

// The page source for pages homed or held elsewhere: asks the home (its grant is installed
// on a link's reader) and reads ahead. Under proto_mu_, on the fault thread; never waits.
class CoherentMemory::RemoteHome final : public PageSource {
 public:
  explicit RemoteHome(CoherentMemory& m) : m_(m) {}
  const char* name() const override { return "remote home"; }
  Status serve_fault(uint64_t page, Access access) override {
    const NodeId home = m_.home_of(page);
    const bool first_touch = m_.requester_->access(page) == Access::kNone;
    auto out = m_.requester_->on_fault(page, access, home);
    // Also a fault on a page whose prefetch is out: it waits for that answer.
    if ((!out.empty() || m_.requester_->pending(page)) && !m_.waiting_.count(page)) {
      m_.waiting_[page] = {monotonic_ns(), access, m_.fault_tid_};
      m_.holds_.wait_began(m_.fault_tid_);
    }
    if (!out.empty())
      log::trace("remote fault: page {:#x} {} (home h{}, thread {})", page * kPageBytes,
                 access == Access::kWrite ? "write" : "read", home, m_.fault_tid_);
    for (auto& msg : out) {
      ++m_.stats_.requests_sent;
      m_.work_.push_back(std::move(msg));
    }
    // Pages homed here have the DormantServer's batches and prefetch instead.
    if (first_touch && home != m_.config_.self) m_.read_ahead(page, home);
    if (!out.empty() && m_.fault_tid_ != 0) m_.ask_for_group(page);
    return {};
  }

 private:
  CoherentMemory& m_;
};

CoherentMemory::CoherentMemory(uint8_t* base, uint64_t bytes, const CoherentMemoryConfig& config,
                               CoherenceTransport& transport,
                               std::function<void(const Error&)> on_fatal)
    : base_(base),
      pages_(bytes / kPageBytes),
      config_(config),
      transport_(transport),
      on_fatal_(std::move(on_fatal)),
      holds_(config.hold_ns, config.max_hold_ns,
             [this](uint32_t tid) {
               const bool halted = thread_halted_in_kvm(tid);
               if (halted) ++stats_.holds_ended_halted;
               return halted;
             }),
      groups_(config.group_window_ns != 0 ? config.group_window_ns
                                          : std::max<uint64_t>(64 * config.hold_ns, 10'000'000)) {}

Result<std::unique_ptr<CoherentMemory>> CoherentMemory::create(
    uint8_t* base, uint64_t bytes, const CoherentMemoryConfig& config,
    CoherenceTransport& transport, std::function<void(const Error&)> on_fatal) {
  if (config.home_of_piece.size() * kHomePieceBytes < bytes)
    return Error("coherent memory: homes cover " +
                 format_size(config.home_of_piece.size() * kHomePieceBytes) + " of " +
                 format_size(bytes));
  std::unique_ptr<CoherentMemory> m(
      new CoherentMemory(base, bytes, config, transport, std::move(on_fatal)));
  auto uffd = Userfaultfd::open(true, /*want_thread_id=*/true);  // for on_remote_fault
  if (!uffd) return uffd.error();
  m->uffd_ = std::move(*uffd);
  SHOAL_TRY(m->uffd_.register_missing_wp(base, bytes), "coherent memory");
  auto pool = ZeroPool::create(ZeroPoolConfig{config.pool_bytes});
  if (!pool) return pool.error();
  m->pool_ = std::move(*pool);
  SHOAL_TRY(m->pool_->enable_recycling(m->uffd_, std::max<uint64_t>(2, m->pool_->chunks() / 4)),
            "zero pool");
  SHOAL_TRY(m->pool_->start(), "zero pool");
  m->local_ = std::make_unique<UffdPages>(*m);
  auto directory = PageDirectory::create(m->pages_);
  if (!directory) return directory.error();
  m->directory_.emplace(std::move(*directory));
  auto home = HomeDirectory::create(config.self, m->pages_, *m->local_);
  if (!home) return home.error();
  m->home_.emplace(std::move(*home));
  m->requester_ = std::make_unique<PageRequester>(config.self, *m->directory_, *m->local_);
  CoherentMemory* self = m.get();
  DormantGate gate{[self](uint64_t page) { return self->may_serve_dormant(page); },
                   [self](uint64_t first, uint64_t count) {
                     for (uint64_t p = first; p < first + count; ++p)
                       self->home_->claim_uncached(p, self->config_.self);
                     self->stats_.local_dormant_pages += count;
                   }};
  auto dormant = DormantServer::create(m->uffd_, {base, m->pages_ * kPageBytes}, *m->directory_,
                                       m->pool_.get(), FaultServing::kBatch, config.budget_bytes,
                                       std::move(gate));
  if (!dormant) return dormant.error().context("coherent memory");
  m->dormant_ = std::move(*dormant);
  m->remote_ = std::make_unique<RemoteHome>(*m);
  m->held_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  m->stop_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!m->held_fd_.valid() || !m->stop_fd_.valid()) return errno_error("eventfd");
  m->thread_ = std::thread([self = m.get()] { self->loop(); });
  return m;
}

CoherentMemory::~CoherentMemory() {
  stop();
}

void CoherentMemory::stop() {
  if (stopped_) return;
  stopped_ = true;
  signal_eventfd(stop_fd_.get());
  if (thread_.joinable()) thread_.join();
  // Link readers keep delivering until the mesh closes, which comes after this: they handle
  // messages under proto_mu_ and use the pool and the fd, so both go under it, and deliver()
  // drops what arrives later. (Resetting the pool under a reader crashed host 0's node at the
  // end of a pod in the test machine, where other hosts still recall pages.)
  std::lock_guard lock(proto_mu_);
  closed_ = true;
  discard_cv_.notify_all();
  // Closing the userfaultfd unregisters the mapping and wakes every waiting thread; their
  // faults are then ordinary ones. The pool goes first: its recycling chunks use the fd.
  dormant_.reset();
  pool_.reset();
  uffd_ = Userfaultfd();
}

void CoherentMemory::deliver(CoherenceMessage m) {
  if (m.payload == CoherenceMessage::Payload::kData) stats_.page_bytes_received += m.data.size();
  // Handled right here on the link's reader thread: handing it to the fault thread would cost
  // two more thread wake-ups per round trip, the largest part of a remote fault's latency.
  std::lock_guard lock(proto_mu_);
  // Counted under the lock, with the message handled: a pod snapshot takes "as many received
  // as sent, and nothing queued" to mean nothing is in flight (quiet()), so a message must
  // never be counted while it is still on its way into work_.
  ++stats_.messages_received;
  if (closed_) return;  // stopped: the pod is going away
  if (m.page >= pages_ || m.from >= kMaxPodHosts || m.from == config_.self)
    return fail(Error("message about page " + format_hex(m.page) + " from host " +
                      std::to_string(m.from) + ": no such page or host"));
  using T = CoherenceMessage::Type;
  const bool for_home = m.type == T::kRequest || m.type == T::kInvalidateAck ||
                        m.type == T::kRecallAck || m.type == T::kDiscard;
  if (m.to != config_.self || (for_home && home_of(m.page) != config_.self))
    return fail(Error("message about page " + format_hex(m.page) + " from host " +
                      std::to_string(m.from) + ": sent to host " + std::to_string(m.to) +
                      ", home " + std::to_string(home_of(m.page)) + ", not this one"));
  const size_t held = held_.size();
  work_.push_back(std::move(m));
  run_queue();
  if (held_.size() > held) signal_eventfd(held_fd_.get());  // the fault thread's timer
}

// A page arriving from another host needs one more page of host memory (an upgrade of a
// mapped copy does not). Over the budget the pod stops, as a single host does, with the
// numbers: a grant cannot be refused or deferred once the home has given the page away.
uint64_t CoherentMemory::held_pages() const {
  return directory_->present_pages() + pool_->populated_pages();
}

bool CoherentMemory::budget_allows_one_more() {
  if (config_.budget_bytes == 0) return true;
  if ((held_pages() + 1) * kPageBytes <= config_.budget_bytes) return true;
  const uint64_t pool_pages = pool_->populated_pages();
  const uint64_t present = directory_->present_pages();
  fail(Error("memory budget of " + format_size(config_.budget_bytes) + " exhausted: " +
             std::to_string(present) + " guest pages present + " + std::to_string(pool_pages) +
             " in the zero pool, a page from another host arrived (raise memoryBudget)"));
  return false;
}

Status CoherentMemory::discard(uint64_t offset, uint64_t bytes) {
  if (offset % kPageBytes != 0 || bytes % kPageBytes != 0)
    return Error("discard: range is not page-aligned");
  if (offset > pages_ * kPageBytes || bytes > pages_ * kPageBytes - offset)
    return Error("discard: range is outside guest RAM");
  std::unique_lock lock(proto_mu_);
  if (closed_ || failed_) return {};  // the pod is going down
  const uint64_t first = offset / kPageBytes, pages = bytes / kPageBytes;
  discard_acks_pending_ += pages;
  // In slices, letting go of the lock between them: a large discard's local work (zapping
  // pages homed here) takes seconds, and the links' readers must keep serving meanwhile.
  constexpr uint64_t kSlice = 256;
  for (uint64_t at = first; at < first + pages; at += kSlice) {
    if (at != first) {
      lock.unlock();
      lock.lock();
      if (closed_ || failed_) return {};
    }
    for (uint64_t p = at; p < std::min(first + pages, at + kSlice); ++p)
      work_.push_back(
          CoherenceMessage{CoherenceMessage::Type::kDiscard, p, config_.self, home_of(p)});
    const size_t held = held_.size();
    run_queue();
    // As in deliver(): a recall this home sent itself may wait for its hold, and the fault
    // thread, perhaps asleep in poll, must learn of the new deadline.
    if (held_.size() > held) signal_eventfd(held_fd_.get());
  }
  // Other discards waiting at the same time count in the same total: each waits for all.
  const bool acked = discard_cv_.wait_for(lock, std::chrono::nanoseconds(kDiscardWaitNs), [&] {
    return discard_acks_pending_ == 0 || closed_ || failed_;
  });
  if (!acked)
    return Error("discard: " + std::to_string(discard_acks_pending_) +
                 " pages not acked by their homes after " +
                 std::to_string(kDiscardWaitNs / 1'000'000'000) + " s");
  return {};
}

uint64_t CoherentMemory::stuck_ns() {
  // Now is read under the lock every timestamp below is written under (read before it, a
  // newer fault made the difference wrap: "a page fault has waited 18446744073 s").
  std::lock_guard lock(proto_mu_);
  const uint64_t now = monotonic_ns();
  const uint64_t busy = busy_since_ns_.load(std::memory_order_relaxed);
  uint64_t oldest = busy == 0 ? now : busy;
  for (const auto& [page, w] : waiting_) oldest = std::min(oldest, w.since_ns);
  return oldest < now ? now - oldest : 0;
}

void CoherentMemory::fail(const Error& e) {
  if (failed_.exchange(true)) return;
  discard_cv_.notify_all();
  on_fatal_(e.context("coherent memory"));
}

void CoherentMemory::loop() {
  pollfd fds[3] = {
      {uffd_.fd(), POLLIN, 0}, {held_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
  uffd_msg msgs[kMaxEvents];
  while (!failed_) {
    int timeout_ms = -1;
    {
      std::lock_guard lock(proto_mu_);
      if (!held_.empty()) {
        const uint64_t now = monotonic_ns();
        const uint64_t until = held_.begin()->first;
        timeout_ms = until <= now ? 0 : static_cast<int>((until - now + 999'999) / 1'000'000);
      }
    }
    if (poll(fds, 3, timeout_ms) < 0 && errno != EINTR) return fail(errno_error("poll"));
    if (fds[2].revents) return;
    if (fds[1].revents) drain_eventfd(held_fd_.get());
    std::lock_guard lock(proto_mu_);
    busy_since_ns_.store(monotonic_ns(), std::memory_order_relaxed);
    if (fds[0].revents) {
      const ssize_t n = read(uffd_.fd(), msgs, sizeof msgs);
      if (n < 0 && errno != EAGAIN && errno != EINTR) return fail(errno_error("read userfaultfd"));
      const uint64_t read_at_ns = monotonic_ns();  // one clock read for the whole batch
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
        const uint64_t address = msgs[i].arg.pagefault.address;
        const uint64_t offset = address - reinterpret_cast<uint64_t>(base_);
        if (address < reinterpret_cast<uint64_t>(base_) || offset >= pages_ * kPageBytes)
          return fail(Error("fault at " + format_hex(address) + " outside guest RAM"));
        const uint64_t flags = msgs[i].arg.pagefault.flags;
        const bool wp = (flags & UFFD_PAGEFAULT_FLAG_WP) != 0;
        stats_.wp_faults += wp ? 1 : 0;
        fault_tid_ = msgs[i].arg.pagefault.feat.ptid;
        holds_.faulted(fault_tid_, read_at_ns);
        on_fault(offset / kPageBytes,
                 wp || (flags & UFFD_PAGEFAULT_FLAG_WRITE) ? Access::kWrite : Access::kRead);
      }
      run_queue();
    }
    release_held();
    busy_since_ns_.store(0, std::memory_order_relaxed);
  }
}

void CoherentMemory::on_fault(uint64_t page, Access access) {
  ++stats_.faults;
  if (requester_->access(page) >= access) {
    // Another vCPU's fault on a page that has arrived since: only the waiter needs waking.
    uffd_.wake(addr(page), kPageBytes);
    return;
  }
  // The page's source: for this host's own first touch the zero pool (no message; the gate
  // records each page served as held here in the home directory), else its home.
  const bool local = requester_->access(page) == Access::kNone && may_serve_dormant(page);
  PageSource& source = local ? static_cast<PageSource&>(*dormant_) : *remote_;
  if (Status s = source.serve_fault(page, access); !s.ok())
    return fail(s.error().context("serve page " + format_hex(page) + " from the " + source.name()));
  if (local) holds_.installed(page, fault_tid_, monotonic_ns());
}

// A dormant page the DormantServer may serve here: homed here, held by nobody, with no
// transaction or request in flight (its own check adds: dormant in this host's directory).
bool CoherentMemory::may_serve_dormant(uint64_t page) const {
  return home_of(page) == config_.self && !requester_->pending(page) && home_->can_claim(page);
}

void CoherentMemory::release_held() {
  const uint64_t now = monotonic_ns();
  bool any = false;
  while (!held_.empty() && held_.begin()->first <= now) {
    work_.push_back(std::move(held_.begin()->second));
    held_.erase(held_.begin());
    any = true;
  }
  if (any) run_queue();
}

void CoherentMemory::run_queue() {
  using T = CoherenceMessage::Type;
  while (!work_.empty() && !failed_) {
    CoherenceMessage m = std::move(work_.front());
    work_.pop_front();
    if (m.to != config_.self) {
      ++stats_.messages_sent;
      if (m.payload == CoherenceMessage::Payload::kData) stats_.page_bytes_sent += m.data.size();
      if (Status s = transport_.send(m); !s.ok()) return fail(s.error().context("send"));
      continue;
    }
    if (m.type == T::kInvalidate || m.type == T::kRecall) {
      // Taking away a page that just arrived would let two hosts' vCPUs snatch it back and
      // forth without either running: keep it for its hold first (memory/page_holds.hpp).
      // A thread's wait keeps its pages only from hosts below this one in the current turn's
      // order, so two hosts that each hold part of what the other waits for do not keep it all.
      const bool waits_count = m.taker == CoherenceMessage::kNoSource ||
                               wait_outranks(config_.self, m.taker, config_.hosts, wall_clock_ns(),
                                             config_.priority_turn_ns);
      if (const uint64_t until = holds_.held_until(m.page, monotonic_ns(), waits_count);
          until != 0) {
        ++stats_.held_back;
        held_.emplace(until, std::move(m));
        continue;
      }
    }
    std::vector<CoherenceMessage> out;
    if (is_for_home(m.type)) {
      out = home_->on_message(m);
    } else {
      auto w = m.type == T::kGrant ? waiting_.find(m.page) : waiting_.end();
      if (m.type == T::kGrant) {
        // For the thread whose fault it answers, or whose fault asked for its group (none:
        // a read-ahead).
        uint32_t tid = w != waiting_.end() ? w->second.tid : 0;
        if (auto g = group_tids_.find(m.page); g != group_tids_.end()) {
          if (tid == 0) tid = g->second;
          group_tids_.erase(g);
        }
        holds_.installed(m.page, tid, monotonic_ns());
        if (m.payload == CoherenceMessage::Payload::kZero && m.from != config_.self)
          ++stats_.remote_dormant_pages;
      }
      // A page held writable and taken for another host's write (a recall always takes it
      // for a host other than its owner): if this host faults on it again soon, the pages
      // taken with it come back with it.
      const bool taken = m.type == T::kRecall && m.access == Access::kWrite &&
                         requester_->access(m.page) == Access::kWrite;
      out = requester_->on_message(m);
      if (taken) groups_.taken(m.page, monotonic_ns());
      if (m.type == T::kDecline) {
        ++stats_.prefetches_declined;
        window_ = 0;  // the run has reached pages in use: stop reading ahead
      }
      if (m.type == T::kDiscardAck && discard_acks_pending_ > 0 && --discard_acks_pending_ == 0)
        discard_cv_.notify_all();
      if (m.type == T::kGrant && m.from == config_.self) home_->self_copy_installed(m.page);
      if (m.type == T::kGrant) {
        if (w != waiting_.end() && requester_->access(m.page) >= w->second.access) {
          const double us = static_cast<double>(monotonic_ns() - w->second.since_ns) / 1000.0;
          std::lock_guard lock(latency_mu_);
          auto& v = w->second.access == Access::kWrite ? latencies_.write_us : latencies_.read_us;
          if (v.size() < kMaxLatencySamples) v.push_back(us);
          if (config_.on_remote_fault && m.source != CoherenceMessage::kNoSource &&
              m.source != config_.self)
            config_.on_remote_fault(w->second.tid, m.source);
          holds_.wait_ended(w->second.tid, monotonic_ns());
          waiting_.erase(w);
        }
      }
    }
    for (auto& o : out) work_.push_back(std::move(o));
  }
}

}  // namespace shoal

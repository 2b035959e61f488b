#include "memory/fault_server.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <string>

#include "shoal/clock.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr uint64_t kPage = kPageSize;
constexpr size_t kMaxEvents = 64;

}  // namespace

FaultServer::FaultServer(const Userfaultfd& uffd, Target ram, PageDirectory& directory,
                         ZeroPool* pool, FaultServing serving,
                         std::function<void(const Error&)> on_fatal, uint64_t budget_bytes,
                         SnapshotSource* snapshot, WorkingSetTracker* working_set)
    : uffd_(uffd),
      ram_(ram),
      dir_(directory),
      pool_(pool),
      serving_(serving),
      budget_bytes_(budget_bytes),
      on_fatal_(std::move(on_fatal)),
      snapshot_(snapshot),
      working_set_(working_set),
      stop_fd_(eventfd(0, EFD_CLOEXEC)) {}

FaultServer::~FaultServer() {
  stop();
}

Status FaultServer::start() {
  if (!stop_fd_.valid()) return errno_error("fault server: eventfd");
  DormantGate gate = snapshot_ ? snapshot_->gate() : DormantGate{};
  if (working_set_ != nullptr)
    // Every page served, not just the faulting one: the batch and the prefetch around it are
    // mapped writable, and a replica must copy whatever the guest may write there next.
    gate.served = [ws = working_set_](uint64_t first, uint64_t count) {
      ws->record_range(first, count);
    };
  auto server =
      DormantServer::create(uffd_, ram_, dir_, pool_, serving_, budget_bytes_, std::move(gate));
  if (!server) return server.error().context("fault server");
  server_ = std::move(*server);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "uffd-server");
    loop();
  });
  return {};
}

void FaultServer::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!write(stop_fd_.get(), &one, sizeof one);
  thread_.join();
}

const FaultServerStats& FaultServer::stats() const {
  static const FaultServerStats kNotStarted;
  return server_ ? server_->stats() : kNotStarted;
}

uint64_t FaultServer::busy_ns() const {
  const uint64_t since = busy_since_ns_.load(std::memory_order_relaxed);
  return since == 0 ? 0 : monotonic_ns() - since;
}

void FaultServer::loop() {
  pollfd fds[2] = {{uffd_.fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
  uffd_msg msgs[kMaxEvents];
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      on_fatal_(errno_error("fault server: poll"));
      return;
    }
    if (fds[1].revents) return;
    const ssize_t n = read(uffd_.fd(), msgs, sizeof msgs);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      on_fatal_(errno_error("fault server: read userfaultfd"));
      return;
    }
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      const uint64_t address = msgs[i].arg.pagefault.address;
      const uint64_t offset = address - reinterpret_cast<uint64_t>(ram_.base);
      if (address < reinterpret_cast<uint64_t>(ram_.base) || offset >= ram_.bytes) {
        on_fatal_(Error("fault server: fault at " + format_hex(address) + " outside guest RAM"));
        return;
      }
      const bool write = (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
      const uint64_t page = offset / kPage;
      std::unique_lock<std::mutex> serving;
      if (working_set_ != nullptr) serving = working_set_->hold_serving();
      if ((msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) != 0) {
        // Only the working set's window write-protects a single host's pages.
        Status s = working_set_ != nullptr
                       ? working_set_->on_write_fault(page)
                       : Status(Error("a write-protect fault with no working set window"));
        if (!s.ok()) {
          on_fatal_(s.error().context("guest page at offset " + format_hex(offset & ~(kPage - 1))));
          return;
        }
        continue;
      }
      PageSource& source = snapshot_ != nullptr && snapshot_->pending(page)
                               ? static_cast<PageSource&>(*snapshot_)
                               : static_cast<PageSource&>(*server_);
      busy_since_ns_.store(monotonic_ns(), std::memory_order_relaxed);
      Status s = source.serve_fault(page, write ? Access::kWrite : Access::kRead);
      busy_since_ns_.store(0, std::memory_order_relaxed);
      if (working_set_ != nullptr && s.ok()) working_set_->record(page);
      if (!s.ok()) {
        on_fatal_(s.error().context("serve guest page at offset " +
                                    format_hex(offset & ~(kPage - 1)) + " from the " +
                                    source.name()));
        return;
      }
    }
  }
}

}  // namespace shoal

#include "devices/virtio_blk.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/io_ring.hpp"
#include "devices/virtio_blk_request.hpp"
#include "devices/virtio_worker.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

// Feature bits (5.2.3).
constexpr uint64_t kFSegMax = 1ull << 2, kFRo = 1ull << 5, kFBlkSize = 1ull << 6,
                   kFFlush = 1ull << 9, kFMq = 1ull << 12;
// A chain has the header and the status besides its data.
constexpr uint32_t kSegMax = Virtqueue::kMaxSize - 2;
// io_uring tags: a request's slot, or one of these.
constexpr uint64_t kNotifyTag = 1ull << 62, kStopTag = 1ull << 61;

}  // namespace

Result<DiskOptions> parse_disk_option(const std::string& text) {
  DiskOptions d;
  const size_t comma = text.find(',');
  d.path = text.substr(0, comma);
  if (d.path.empty()) return Error("--disk: no path in '" + text + "' (expected PATH[,ro])");
  if (comma != std::string::npos) {
    const std::string opt = text.substr(comma + 1);
    if (opt != "ro")
      return Error("--disk " + d.path + ": unknown option '" + opt + "' (expected PATH[,ro])");
    d.read_only = true;
  }
  return d;
}

VirtioBlk::VirtioBlk(std::string path, UniqueFd fd, uint64_t bytes, bool read_only, uint16_t queues)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      bytes_(bytes),
      read_only_(read_only),
      queues_wanted_(queues) {}

Result<std::unique_ptr<VirtioBlk>> VirtioBlk::open(const DiskOptions& disk, uint16_t queues) {
  const std::string what = "--disk " + disk.path;
  if (queues == 0 || queues > kMaxQueues)
    return Error(what + ": " + std::to_string(queues) + " queues, expected 1 to " +
                 std::to_string(kMaxQueues));
  struct stat st {};
  if (::stat(disk.path.c_str(), &st) < 0) return errno_error(what);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return Error(what + ": not a regular file or block device");
  UniqueFd fd(::open(disk.path.c_str(), (disk.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd.valid() && !disk.read_only && (errno == EACCES || errno == EROFS || errno == EPERM))
    return Error(what + ": cannot be opened for writing (" + std::strerror(errno) +
                 "); add ,ro for a read-only disk");
  if (!fd.valid()) return errno_error(what);
  uint64_t bytes = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode) && ioctl(fd.get(), BLKGETSIZE64, &bytes) < 0)
    return errno_error(what + ": BLKGETSIZE64");
  if (bytes == 0) return Error(what + ": the image is empty");
  if (bytes % kBlkSector != 0)
    return Error(what + ": " + std::to_string(bytes) +
                 " bytes is not a whole number of 512-byte sectors");
  // Two VMMs writing one image corrupt it: shared for a read-only disk, exclusive otherwise.
  if (::flock(fd.get(), (disk.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0)
    return errno == EWOULDBLOCK ? Error(what + ": in use by another process (locked)")
                                : errno_error(what + ": flock");
  return std::unique_ptr<VirtioBlk>(
      new VirtioBlk(disk.path, std::move(fd), bytes, disk.read_only, queues));
}

Result<std::vector<std::unique_ptr<VirtioDevice>>> VirtioBlk::open_all(
    const std::vector<DiskOptions>& disks, int vcpus) {
  const auto queues = static_cast<uint16_t>(std::clamp<int>(vcpus, 1, kMaxQueues));
  std::vector<std::unique_ptr<VirtioDevice>> out;
  for (const DiskOptions& d : disks) {
    auto disk = open(d, queues);
    if (!disk) return disk.error();
    out.push_back(std::move(*disk));
  }
  return out;
}

VirtioBlk::~VirtioBlk() {
  reset();
}

uint64_t VirtioBlk::features() const {
  return kFSegMax | kFBlkSize | kFFlush | (read_only_ ? kFRo : 0) | (queues_wanted_ > 1 ? kFMq : 0);
}

void VirtioBlk::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // struct virtio_blk_config up to num_queues (5.2.4); the rest reads as zero.
  uint8_t config[36] = {};
  const uint64_t capacity = capacity_sectors();
  std::memcpy(config + 0, &capacity, 8);
  std::memcpy(config + 12, &kSegMax, 4);
  std::memcpy(config + 20, &kBlkSector, 4);
  std::memcpy(config + 34, &queues_wanted_, 2);
  copy_config(config, offset, data);
}

Status VirtioBlk::activate(std::vector<Virtqueue> queues, uint64_t features,
                           std::vector<int> notify_fds, VirtioInterrupt& interrupt) {
  reset();
  stop_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
  if (!stop_fd_.valid()) return errno_error("eventfd");
  queues_ = std::move(queues);
  notify_fds_ = std::move(notify_fds);
  features_ = features;
  interrupt_ = &interrupt;
  requests_.assign(queues_.size() * Virtqueue::kMaxSize, Request{});
  interrupt_due_.assign(queues_.size(), false);
  notify_values_.assign(queues_.size(), 0);
  in_flight_ = 0;
  broken_ = false;
  worker_ = std::thread([this] { run(); });
  return {};
}

void VirtioBlk::reset() {
  if (!worker_.joinable()) return;
  signal_eventfd(stop_fd_.get());
  worker_.join();
  queues_.clear();
}

bool VirtioBlk::any_available() const {
  return !broken_ && std::any_of(queues_.begin(), queues_.end(),
                                 [](const Virtqueue& q) { return q.has_available(); });
}

void VirtioBlk::run() {
  // Room for every chain of every queue at once (a wake-up may find them all available) and
  // the notify and stop reads; the completion ring is twice that.
  auto made = IoRing::create(static_cast<unsigned>(queues_.size() * (Virtqueue::kMaxSize + 1) + 1));
  if (!made) return interrupt_->needs_reset("io_uring: " + made.error().message());
  IoRing& ring = *made;
  // Completions below are reaped one by one as they come; these reads are re-armed each time
  // their eventfd fires.
  for (size_t q = 0; q < queues_.size(); ++q)
    ring.queue_read(notify_fds_[q], &notify_values_[q], 8, kNotifyTag | q);
  ring.queue_read(stop_fd_.get(), &stop_value_, 8, kStopTag);
  bool stopping = false;
  ring_ = &ring;
  for (;;) {
    if (!stopping)
      for (size_t q = 0; q < queues_.size(); ++q) drain(static_cast<uint16_t>(q));
    if (const int rc = ring.submit(); rc < 0) {
      // Requests queued but not submitted would never complete: the device gives up.
      interrupt_->needs_reset("io_uring submit: " + std::string(std::strerror(-rc)));
      break;
    }
    if (stopping && in_flight_ == 0) break;
    if (!stopping && in_flight_ == 0 &&
        virtio_work_before_sleep(queues_, ring, [this] { return any_available(); }))
      continue;
    uint64_t tag = 0;
    int result = 0;
    if (Status s = ring.wait(&tag, &result); !s.ok()) {
      interrupt_->needs_reset(s.error().message());
      break;
    }
    do {
      if (!handle_completion(tag, result)) stopping = true;
    } while (ring.peek(&tag, &result));
    virtio_raise_due(queues_, interrupt_due_, *interrupt_);
  }
  ring_ = nullptr;
}

bool VirtioBlk::handle_completion(uint64_t tag, int result) {
  if (tag == kStopTag) return false;
  if ((tag & kNotifyTag) != 0) {
    const uint16_t q = static_cast<uint16_t>(tag & 0xffff);
    ring_->queue_read(notify_fds_[q], &notify_values_[q], 8, tag);
    return true;
  }
  complete(tag, result);
  return true;
}

void VirtioBlk::drain(uint16_t q) {
  if (broken_) return;
  Virtqueue& vq = queues_[q];
  vq.set_notify(false);
  DescriptorChain& chain = chain_;
  for (;;) {
    auto got = vq.pop(chain);
    if (!got) {
      broken_ = true;
      interrupt_->needs_reset("queue " + std::to_string(q) + ": " + got.error().message());
      return;
    }
    if (!*got) return;
    start(q, chain);
    if (broken_) return;
  }
}

void VirtioBlk::finish(uint16_t q, uint16_t head, uint8_t status, uint32_t used_len) {
  Request& r = requests_[q * Virtqueue::kMaxSize + head];
  if (r.status != nullptr) *r.status = status;
  queues_[q].push_used(head, used_len);
  interrupt_due_[q] = true;
}

void VirtioBlk::start(uint16_t q, const DescriptorChain& c) {
  const uint16_t head = c.head;
  const uint64_t slot = q * Virtqueue::kMaxSize + head;
  Request& r = requests_[slot];
  // A driver that makes a head available again before the device used it breaks the ring's
  // contract; its request's buffers and status are still in use.
  if (r.in_flight) {
    broken_ = true;
    return interrupt_->needs_reset("queue " + std::to_string(q) + ": chain " +
                                   std::to_string(head) + " made available twice");
  }
  BlkRequest req;
  parse_blk_request(c, capacity_sectors(), read_only_, (features_ & kFFlush) != 0, r.iov, req);
  r.status = req.status;
  if (uint64_t held = 0; req.status == nullptr && warnings_.allow(monotonic_ns(), &held))
    log::warn("{}: chain {} has no status byte{}", name(), head, held_back(held));
  const auto count = static_cast<unsigned>(r.iov.size());
  bool queued = false;
  switch (req.op) {
    case BlkRequest::Op::kAnswer:
      return finish(q, head, req.answer, req.status == nullptr ? 0 : 1);
    case BlkRequest::Op::kRead:
      queued = ring_->queue_readv(fd_.get(), r.iov.data(), count, req.offset, slot);
      r.used_len = static_cast<uint32_t>(req.bytes) + 1;
      break;
    case BlkRequest::Op::kWrite:
      queued = ring_->queue_writev(fd_.get(), r.iov.data(), count, req.offset, slot);
      r.used_len = 1;
      break;
    case BlkRequest::Op::kFlush:
      queued = ring_->queue_fsync(fd_.get(), slot);
      r.used_len = 1;
      break;
    case BlkRequest::Op::kGetId: {
      // The image's file name, cut to the 20 bytes the ID has (NUL-padded if shorter).
      char id[kBlkIdBytes] = {};
      const std::string base = path_.substr(path_.find_last_of('/') + 1);
      base.copy(id, std::min<size_t>(base.size(), kBlkIdBytes));
      uint32_t done = 0;
      for (const iovec& v : r.iov) {
        const auto n = static_cast<uint32_t>(std::min<uint64_t>(v.iov_len, kBlkIdBytes - done));
        std::memcpy(v.iov_base, id + done, n);
        done += n;
      }
      return finish(q, head, kBlkStatusOk, done + 1);
    }
  }
  r.expected = req.op == BlkRequest::Op::kFlush ? 0 : static_cast<int64_t>(req.bytes);
  // The SQ has room for every request of every queue, so this cannot fail; if it did, the
  // guest gets an error rather than a request that never completes.
  if (!queued) return finish(q, head, kBlkStatusIoErr, 1);
  r.in_flight = true;
  ++in_flight_;
}

void VirtioBlk::complete(uint64_t slot, int result) {
  --in_flight_;
  const auto q = static_cast<uint16_t>(slot / Virtqueue::kMaxSize);
  const auto head = static_cast<uint16_t>(slot % Virtqueue::kMaxSize);
  Request& r = requests_[slot];
  r.in_flight = false;
  // A short transfer (only at the end of a block device, or a full file system) is an error
  // to the guest: the spec has no partial success.
  if (result != r.expected) {
    if (uint64_t held = 0; warnings_.allow(monotonic_ns(), &held))
      log::warn("{}: request on queue {} ended with {} (expected {}){}", name(), q, result,
                r.expected, held_back(held));
    return finish(q, head, kBlkStatusIoErr, 1);
  }
  finish(q, head, kBlkStatusOk, r.used_len);
}

}  // namespace shoal

#include "devices/virtio_mmio.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

#include "shoal/clock.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

// Register offsets (virtio 1.x, 4.2.2).
enum : uint64_t {
  kMagic = 0x000,
  kVersion = 0x004,
  kDeviceId = 0x008,
  kVendorId = 0x00c,
  kDeviceFeatures = 0x010,
  kDeviceFeaturesSel = 0x014,
  kDriverFeatures = 0x020,
  kDriverFeaturesSel = 0x024,
  kQueueSel = 0x030,
  kQueueNumMax = 0x034,
  kQueueNum = 0x038,
  kQueueReady = 0x044,
  kQueueNotify = 0x050,
  kInterruptStatus = 0x060,
  kInterruptAck = 0x064,
  kStatus = 0x070,
  kQueueDescLow = 0x080,
  kQueueDescHigh = 0x084,
  kQueueDriverLow = 0x090,
  kQueueDriverHigh = 0x094,
  kQueueDeviceLow = 0x0a0,
  kQueueDeviceHigh = 0x0a4,
  kConfig = 0x100,
};
constexpr uint32_t kMagicValue = 0x74726976;  // "virt"
constexpr uint32_t kVendor = 0x4c414f53;      // "SOAL"
constexpr uint32_t kStatusFeaturesOk = 8, kStatusDriverOk = 4, kStatusNeedsReset = 64;
constexpr uint32_t kInterruptUsedBuffer = 1, kInterruptConfigChange = 2;

void set_low(uint64_t& v, uint32_t low) {
  v = (v & ~0xffffffffull) | low;
}
void set_high(uint64_t& v, uint32_t high) {
  v = (v & 0xffffffffull) | static_cast<uint64_t>(high) << 32;
}

}  // namespace

VirtioMmio::VirtioMmio(Vm* vm, const GuestRam& ram, uint64_t base, uint32_t gsi,
                       std::unique_ptr<VirtioDevice> device)
    : vm_(vm), ram_(ram), base_(base), gsi_(gsi), device_(std::move(device)) {
  queues_.resize(device_->queue_count());
}

void signal_eventfd(int fd) {
  const uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
}

Result<std::shared_ptr<VirtioMmio>> VirtioMmio::create(Vm* vm, const GuestRam& ram, uint64_t base,
                                                       uint32_t gsi,
                                                       std::unique_ptr<VirtioDevice> device) {
  std::shared_ptr<VirtioMmio> t(new VirtioMmio(vm, ram, base, gsi, std::move(device)));
  SHOAL_TRY(t->register_eventfds(), t->device_->name());
  return t;
}

VirtioMmio::~VirtioMmio() {
  stop();
  unregister_eventfds();
}

Status VirtioMmio::register_eventfds() {
  irq_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!irq_fd_.valid()) return errno_error("eventfd");
  for (uint16_t q = 0; q < device_->queue_count(); ++q) {
    notify_fds_.emplace_back(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!notify_fds_.back().valid()) return errno_error("eventfd");
  }
  if (vm_ == nullptr) return {};
  SHOAL_TRY(vm_->set_irqfd(irq_fd_.get(), gsi_, true), "");
  registered_ = true;
  for (size_t q = 0; q < notify_fds_.size(); ++q)
    SHOAL_TRY(vm_->set_ioeventfd(notify_fds_[q].get(), base_ + kQueueNotify, 4, q, true),
              "queue " + std::to_string(q));
  return {};
}

void VirtioMmio::unregister_eventfds() {
  if (!registered_) return;
  for (size_t q = 0; q < notify_fds_.size(); ++q)
    (void)vm_->set_ioeventfd(notify_fds_[q].get(), base_ + kQueueNotify, 4, q, false);
  (void)vm_->set_irqfd(irq_fd_.get(), gsi_, false);
  registered_ = false;
}

void VirtioMmio::stop() {
  std::lock_guard lock(mu_);
  if (active_) device_->reset();
  active_ = false;
  stopped_ = true;
}

void VirtioMmio::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (offset >= kConfig) {
    device_->read_config(offset - kConfig, data);
    return;
  }
  // Registers are 32 bits wide and read whole (4.2.2.2); anything else reads as zero.
  if (data.size() != 4 || offset % 4 != 0) return;
  std::lock_guard lock(mu_);
  const uint32_t v = read_register(offset);
  std::memcpy(data.data(), &v, 4);
}

void VirtioMmio::write(uint64_t offset, std::span<const uint8_t> data) {
  // The configuration space is read-only for every device shoal has; so are odd-sized writes.
  if (offset >= kConfig || data.size() != 4 || offset % 4 != 0) return;
  uint32_t v;
  std::memcpy(&v, data.data(), 4);
  std::lock_guard lock(mu_);
  write_register(offset, v);
}

uint32_t VirtioMmio::read_register(uint64_t offset) {
  const uint64_t offered = device_->features() | kVirtioFVersion1;
  const Queue* q = queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
  switch (offset) {
    case kMagic:
      return kMagicValue;
    case kVersion:
      return 2;
    case kDeviceId:
      return device_->device_id();
    case kVendorId:
      return kVendor;
    case kDeviceFeatures:
      return device_features_sel_ == 0   ? static_cast<uint32_t>(offered)
             : device_features_sel_ == 1 ? static_cast<uint32_t>(offered >> 32)
                                         : 0;
    case kQueueNumMax:
      return q != nullptr ? Virtqueue::kMaxSize : 0;
    case kQueueReady:
      return q != nullptr && q->ready ? 1 : 0;
    case kInterruptStatus:
      return interrupt_status_.load(std::memory_order_acquire);
    case kStatus:
      return status_ | (needs_reset_.load(std::memory_order_acquire) ? kStatusNeedsReset : 0);
    default:  // ConfigGeneration among them: the configuration never changes
      return 0;
  }
}

void VirtioMmio::write_register(uint64_t offset, uint32_t v) {
  // Queue registers may change only while the queue is not ready (4.2.2.3).
  Queue* q =
      queue_sel_ < queues_.size() && !queues_[queue_sel_].ready ? &queues_[queue_sel_] : nullptr;
  switch (offset) {
    case kDeviceFeaturesSel:
      device_features_sel_ = v;
      return;
    case kDriverFeatures:
      if ((status_ & kStatusFeaturesOk) != 0) return;  // fixed once FEATURES_OK is set
      if (driver_features_sel_ == 0) set_low(driver_features_, v);
      if (driver_features_sel_ == 1) set_high(driver_features_, v);
      return;
    case kDriverFeaturesSel:
      driver_features_sel_ = v;
      return;
    case kQueueSel:
      queue_sel_ = v;
      return;
    case kQueueNum:
      if (q != nullptr) q->at.size = static_cast<uint16_t>(std::min<uint32_t>(v, 0xffff));
      return;
    case kQueueReady:
      if (queue_sel_ < queues_.size() && !active_) queues_[queue_sel_].ready = v == 1;
      return;
    case kQueueNotify:
      // Only without KVM (unit tests) or for a queue the ioeventfds do not cover: the eventfd
      // is what the device's worker waits on either way.
      if (v < notify_fds_.size()) signal_eventfd(notify_fds_[v].get());
      return;
    case kInterruptAck:
      interrupt_status_.fetch_and(~v, std::memory_order_acq_rel);
      return;
    case kStatus:
      write_status(v);
      return;
    case kQueueDescLow:
      if (q != nullptr) set_low(q->at.desc, v);
      return;
    case kQueueDescHigh:
      if (q != nullptr) set_high(q->at.desc, v);
      return;
    case kQueueDriverLow:
      if (q != nullptr) set_low(q->at.avail, v);
      return;
    case kQueueDriverHigh:
      if (q != nullptr) set_high(q->at.avail, v);
      return;
    case kQueueDeviceLow:
      if (q != nullptr) set_low(q->at.used, v);
      return;
    case kQueueDeviceHigh:
      if (q != nullptr) set_high(q->at.used, v);
      return;
    default:
      return;
  }
}

void VirtioMmio::write_status(uint32_t v) {
  if (v == 0) return reset_locked();
  const uint32_t added = v & ~status_;
  if ((added & kStatusFeaturesOk) != 0) {
    // Only features that were offered, and the modern interface: otherwise FEATURES_OK does
    // not stick and the driver, reading it back, gives up (3.1.1).
    const uint64_t offered = device_->features() | kVirtioFVersion1;
    if ((driver_features_ & ~offered) != 0 || (driver_features_ & kVirtioFVersion1) == 0) {
      if (uint64_t held = 0; warnings_.allow(monotonic_ns(), &held))
        log::warn("{}: the driver asked for features {} of {} offered; refusing them{}",
                  device_->name(), format_hex(driver_features_), format_hex(offered),
                  held_back(held));
      v &= ~kStatusFeaturesOk;
    }
  }
  status_ = v & ~kStatusNeedsReset;
  if ((added & kStatusDriverOk) == 0 || active_ || stopped_) return;
  if ((status_ & kStatusFeaturesOk) == 0) return needs_reset("DRIVER_OK without FEATURES_OK");
  std::vector<Virtqueue> queues;
  std::vector<int> fds;
  // Queues are used in order: the device serves the first ones the driver made ready.
  for (size_t i = 0; i < queues_.size() && queues_[i].ready; ++i) {
    auto vq = Virtqueue::create(ram_, queues_[i].at);
    if (!vq) return needs_reset("queue " + std::to_string(i) + ": " + vq.error().message());
    queues.push_back(std::move(*vq));
    fds.push_back(notify_fds_[i].get());
  }
  if (queues.empty()) return needs_reset("DRIVER_OK with no queue ready");
  if (Status s = device_->activate(std::move(queues), driver_features_, std::move(fds), *this);
      !s.ok())
    return needs_reset(s.error().message());
  active_ = true;
}

void VirtioMmio::reset_locked() {
  if (active_) device_->reset();
  active_ = false;
  status_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  driver_features_ = 0;
  for (Queue& q : queues_) q = Queue{};
  interrupt_status_.store(0, std::memory_order_release);
  needs_reset_.store(false, std::memory_order_release);
}

void VirtioMmio::used_buffers() {
  interrupt_status_.fetch_or(kInterruptUsedBuffer, std::memory_order_acq_rel);
  signal_eventfd(irq_fd_.get());
}

void VirtioMmio::needs_reset(const std::string& why) {
  if (uint64_t held = 0; warnings_.allow(monotonic_ns(), &held))
    log::warn("{}: needs a reset: {}{}", device_->name(), why, held_back(held));
  needs_reset_.store(true, std::memory_order_release);
  interrupt_status_.fetch_or(kInterruptConfigChange, std::memory_order_acq_rel);
  signal_eventfd(irq_fd_.get());
}

}  // namespace shoal

// The virtio-mmio transport, version 2 (virtio 1.x, section 4.2): the registers a driver uses
// to find a device, agree on features, place the queues and start it, at one 512-byte slot
// of the MMIO bus. What the device does is a VirtioDevice's.
//
// Notifications do not exit to the VMM: each queue's QueueNotify value has an ioeventfd
// (KVM signals the device's eventfd in the kernel), and the device raises its interrupt with
// an irqfd. Register accesses come from vCPU threads (any of them) under one lock; the device's
// worker thread only raises interrupts (an atomic and an eventfd write), never takes the lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "arch/guest_ram.hpp"
#include "base/log_budget.hpp"
#include "devices/io_bus.hpp"
#include "devices/virtqueue.hpp"
#include "kvm/kvm.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

inline constexpr uint64_t kVirtioFVersion1 = 1ull << 32;

// Adds one to an eventfd's counter: wakes whoever waits on it (a device's worker, or KVM's
// irqfd, which then raises the GSI). Its counter cannot fill up here (2^64 - 2 signals).
void signal_eventfd(int fd);

// A device's read_config(): the bytes of its configuration structure `config` from `offset`
// into `data`; bytes past its end read as zero (fields of features not offered).
inline void copy_config(std::span<const uint8_t> config, uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = offset + i < config.size() ? config[offset + i] : 0;
}

// How a device tells its driver that it used buffers (or that it needs a reset).
class VirtioInterrupt {
 public:
  virtual ~VirtioInterrupt() = default;
  virtual void used_buffers() = 0;
  virtual void needs_reset(const std::string& why) = 0;
};

// One virtio device type (block, network, ...) behind the transport.
class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual uint32_t device_id() const = 0;
  virtual std::string name() const = 0;  // "virtio-blk /var/disk.img", for the log
  // Feature bits the device offers; the transport adds VIRTIO_F_VERSION_1.
  virtual uint64_t features() const = 0;
  virtual uint16_t queue_count() const = 0;
  // The device-specific configuration space (offset 0 = the transport's 0x100).
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  // The driver set DRIVER_OK: serve `queues` (one per queue, as the driver set them up) with
  // the features it accepted. queue i's notifications arrive on notify_fds[i].
  virtual Status activate(std::vector<Virtqueue> queues, uint64_t features,
                          std::vector<int> notify_fds, VirtioInterrupt& interrupt) = 0;
  // Stop using the queues and guest memory; returns once every request under way is done.
  virtual void reset() = 0;
};

class VirtioMmio : public BusDevice, private VirtioInterrupt {
 public:
  // A transport for `device` at `base`, raising GSI `gsi`. With `vm` null (unit tests) nothing
  // is registered with KVM: notifications then come through write() and interrupts are only
  // counted.
  static Result<std::shared_ptr<VirtioMmio>> create(Vm* vm, const GuestRam& ram, uint64_t base,
                                                    uint32_t gsi,
                                                    std::unique_ptr<VirtioDevice> device);
  ~VirtioMmio() override;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Stops the device (as a reset does) before the memory it uses goes.
  void stop();
  const VirtioDevice& device() const { return *device_; }

 private:
  struct Queue {
    VirtqueueAddresses at;
    bool ready = false;
  };
  VirtioMmio(Vm* vm, const GuestRam& ram, uint64_t base, uint32_t gsi,
             std::unique_ptr<VirtioDevice> device);
  Status register_eventfds();
  void unregister_eventfds();
  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  void reset_locked();
  void used_buffers() override;
  void needs_reset(const std::string& why) override;

  Vm* vm_;
  const GuestRam& ram_;
  const uint64_t base_;
  const uint32_t gsi_;
  std::unique_ptr<VirtioDevice> device_;
  UniqueFd irq_fd_;
  std::vector<UniqueFd> notify_fds_;
  bool registered_ = false;

  mutable std::mutex mu_;
  uint32_t status_ = 0;
  uint32_t device_features_sel_ = 0, driver_features_sel_ = 0, queue_sel_ = 0;
  uint64_t driver_features_ = 0;
  std::vector<Queue> queues_;
  bool active_ = false;
  bool stopped_ = false;  // by stop(): the machine is going, the device never starts again
  std::atomic<uint32_t> interrupt_status_{0};
  std::atomic<bool> needs_reset_{false};
  LogBudget warnings_{5, 1'000'000'000};  // what a driver can make it say, over and over
};

}  // namespace shoal

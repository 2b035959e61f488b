// virtio-blk (virtio 1.x, section 5.2) over a raw image file or block device: reads, writes,
// flushes and the disk's ID, on up to 8 queues, all served by one worker thread with one
// io_uring. The guest's buffers are read and written in place (no bounce copy); a request that
// points outside guest RAM never reaches the file (Virtqueue checks every descriptor).
//
// The worker keeps VIRTQ_USED_F_NO_NOTIFY set while it has requests under way (a completion
// wakes it anyway) and polls the rings for a short while before it sleeps, so a busy driver
// makes far fewer notifications (exits) than requests.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/log_budget.hpp"
#include "devices/virtio_mmio.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class IoRing;

// One --disk: "PATH" or "PATH,ro".
struct DiskOptions {
  std::string path;
  bool read_only = false;
};
Result<DiskOptions> parse_disk_option(const std::string& text);

class VirtioBlk : public VirtioDevice {
 public:
  static constexpr uint32_t kDeviceId = 2;
  static constexpr uint16_t kMaxQueues = 8;

  // Opens and checks the image: it exists, is a regular file or block device, holds a whole
  // number of 512-byte sectors, can be opened as asked (read-write unless `ro`) and is not in
  // use by another shoal or QEMU (an flock). Errors start with "--disk PATH".
  static Result<std::unique_ptr<VirtioBlk>> open(const DiskOptions& disk, uint16_t queues);
  // open() for each disk of a guest with `vcpus` vCPUs: a queue per vCPU, as Linux's blk-mq
  // likes it, up to kMaxQueues.
  static Result<std::vector<std::unique_ptr<VirtioDevice>>> open_all(
      const std::vector<DiskOptions>& disks, int vcpus);
  ~VirtioBlk() override;

  uint32_t device_id() const override { return kDeviceId; }
  std::string name() const override { return "virtio-blk " + path_; }
  uint64_t features() const override;
  uint16_t queue_count() const override { return queues_wanted_; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  Status activate(std::vector<Virtqueue> queues, uint64_t features, std::vector<int> notify_fds,
                  VirtioInterrupt& interrupt) override;
  void reset() override;

  uint64_t capacity_sectors() const { return bytes_ / 512; }

 private:
  struct Request {
    uint8_t* status = nullptr;
    uint32_t used_len = 0;  // what the used ring reports when the I/O succeeds
    int64_t expected = 0;   // the I/O's result on success
    bool in_flight = false;
    std::vector<iovec> iov;
  };
  VirtioBlk(std::string path, UniqueFd fd, uint64_t bytes, bool read_only, uint16_t queues);
  void run();
  void drain(uint16_t q);
  void start(uint16_t q, const DescriptorChain& chain);
  void finish(uint16_t q, uint16_t head, uint8_t status, uint32_t used_len);
  void complete(uint64_t slot, int result);
  bool any_available() const;
  bool handle_completion(uint64_t tag, int result);  // false: the stop event

  const std::string path_;
  const UniqueFd fd_;
  const uint64_t bytes_;
  const bool read_only_;
  const uint16_t queues_wanted_;

  // Set by activate(), used by the worker only, until reset() joins it.
  std::vector<Virtqueue> queues_;
  std::vector<int> notify_fds_;
  uint64_t features_ = 0;
  VirtioInterrupt* interrupt_ = nullptr;
  std::vector<Request> requests_;  // [queue * Virtqueue::kMaxSize + head]
  std::vector<bool> interrupt_due_;
  std::vector<uint64_t> notify_values_;
  uint64_t stop_value_ = 0;
  IoRing* ring_ = nullptr;  // the worker's, while it runs
  DescriptorChain chain_;   // pop()'s, kept so that its buffer list is not allocated per pass
  unsigned in_flight_ = 0;
  bool broken_ = false;  // a malformed ring: the driver must reset the device
  UniqueFd stop_fd_;
  std::thread worker_;
  LogBudget warnings_{5, 1'000'000'000};  // bad requests a driver can repeat at will
};

}  // namespace shoal

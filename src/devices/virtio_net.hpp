// virtio-net (virtio 1.x, section 5.1) over a tap interface (`--net tap=NAME[,mac=MAC]`): one
// receive and one transmit queue, served by one worker thread. Linux sees eth0.
//
// Offloads, where they are simple: the guest may hand the host partly checksummed frames and
// TCP segments up to 64 KiB (CSUM, HOST_TSO4/6: the tap takes them with their header and the
// host kernel finishes them), and the host may hand the guest frames whose checksum it has not
// filled in (GUEST_CSUM). No receive segmentation and no mergeable receive buffers: each frame
// goes into one receive chain whole, so a frame larger than the guest's buffer (over the MTU)
// is dropped, as a NIC drops it.
//
// Transmit chains are written to the tap in place (writev from guest memory); a received frame
// is read into one staging buffer and copied into the guest's chain. A frame waits there while
// the guest has no receive buffer (the tap is not read meanwhile: its queue fills, then the
// host kernel drops), and notifications stay off while the worker has work, as for virtio-blk.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/tap.hpp"
#include "devices/virtio_mmio.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

// One --net: "tap=NAME" or "tap=NAME,mac=52:54:00:12:34:56".
struct NetOptions {
  std::string tap;
  std::array<uint8_t, 6> mac{};
  bool mac_given = false;
};
Result<NetOptions> parse_net_option(const std::string& text);
// The MAC of the index-th --net without mac=: 52:54:00:12:34:56 and up, as QEMU's.
std::array<uint8_t, 6> default_mac(size_t index);

class VirtioNet : public VirtioDevice {
 public:
  static constexpr uint32_t kDeviceId = 1;
  // Room for a 64 KiB frame (the largest a tap hands out) and its header.
  static constexpr size_t kStaging = Tap::kVnetHeader + (64 << 10);

  static Result<std::unique_ptr<VirtioNet>> open(const NetOptions& options,
                                                 const std::array<uint8_t, 6>& mac);
  // open() for each --net, in order; MACs not given come from default_mac().
  static Result<std::vector<std::unique_ptr<VirtioDevice>>> open_all(
      const std::vector<NetOptions>& nets);
  ~VirtioNet() override;

  uint32_t device_id() const override { return kDeviceId; }
  std::string name() const override { return "virtio-net tap=" + tap_.name(); }
  uint64_t features() const override;
  uint16_t queue_count() const override { return 2; }  // receiveq1, transmitq1
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  Status activate(std::vector<Virtqueue> queues, uint64_t features, std::vector<int> notify_fds,
                  VirtioInterrupt& interrupt) override;
  void reset() override;

 private:
  VirtioNet(Tap tap, const std::array<uint8_t, 6>& mac);
  void run();
  void receive();
  void transmit();
  bool work_waiting() const;

  Tap tap_;
  const std::array<uint8_t, 6> mac_;

  // The worker's, from activate() until reset() joins it.
  std::vector<Virtqueue> queues_;
  std::vector<int> notify_fds_;
  uint64_t features_ = 0;
  VirtioInterrupt* interrupt_ = nullptr;
  DescriptorChain chain_;  // pop()'s, kept so that its buffer list is not allocated per pass
  std::vector<iovec> iov_;
  UniqueFd stop_fd_;
  std::vector<uint8_t> frame_;  // a frame read from the tap; frame_size_ bytes of it waiting
  size_t frame_size_ = 0;
  bool tap_readable_ = true, polling_ = false, broken_ = false, tap_gone_ = false;
  std::vector<bool> interrupt_due_;
  uint64_t notify_values_[2] = {}, stop_value_ = 0;
  uint64_t dropped_ = 0;  // frames lost either way, for the log at reset
  std::thread worker_;
};

}  // namespace shoal

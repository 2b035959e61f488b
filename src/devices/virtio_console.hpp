// The shared-memory channel between the guest and the host: a virtio-console device (virtio
// 1.x, section 5.3; one port) whose byte stream shoal bridges to a Unix socket it listens on
// (`--channel PATH`, mode 0600, one peer at a time). It offers MULTIPORT so that the port is
// a named, non-console port ("shoal.channel"): Linux makes it /dev/vportNp0, whose writes
// sleep while the host side is closed, and tells it when the peer comes and goes (PORT_OPEN).
// Without MULTIPORT (the test guest's `chan N`, which polls it) port 0 is a console: Linux's
// /dev/hvc0, whose writes spin until the device takes them. Messages move through the two
// virtqueues in guest memory; the worker keeps notifications off while it has work and polls
// briefly before it sleeps, so a busy guest exchanges messages with far fewer exits than messages.
//
// Until a peer connects the device takes no transmit buffers (the guest's bytes wait in its
// queue, as on a serial line without a cable); bytes from the peer wait in the device until the
// guest posts receive buffers (the socket is not read meanwhile: back-pressure). A peer that
// goes away loses what was in flight; the next one starts afresh.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <linux/time_types.h>

#include "base/log_budget.hpp"
#include "devices/virtio_console_control.hpp"
#include "devices/virtio_mmio.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class IoRing;

struct ChannelCounters {
  uint64_t to_guest = 0;    // bytes
  uint64_t from_guest = 0;  // bytes
  uint64_t wakeups = 0;     // notifications the worker woke up for
  uint64_t peers = 0;       // connections accepted
  uint64_t accept_failures = 0;
};

class VirtioConsole : public VirtioDevice {
 public:
  static constexpr uint32_t kDeviceId = 3;
  static constexpr size_t kStaging = 64 << 10;  // bytes per socket read or write

  // Listens on a new Unix socket at `path` (an existing socket file is replaced; any other
  // file is an error). Errors start with "--channel PATH".
  static Result<std::unique_ptr<VirtioConsole>> listen(const std::string& path);
  ~VirtioConsole() override;

  uint32_t device_id() const override { return kDeviceId; }
  std::string name() const override { return "virtio-console " + path_; }
  uint64_t features() const override;
  // Port 0's receiveq and transmitq, then (MULTIPORT) the control receiveq and transmitq.
  uint16_t queue_count() const override { return 4; }
  static constexpr const char* kPortName = "shoal.channel";
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  Status activate(std::vector<Virtqueue> queues, uint64_t features, std::vector<int> notify_fds,
                  VirtioInterrupt& interrupt) override;
  void reset() override;

  ChannelCounters counters() const;

 private:
  VirtioConsole(std::string path, UniqueFd listener);
  void run();
  void handle(uint64_t tag, int result);
  void to_guest();
  void from_guest();
  void drop_peer();
  bool work_waiting() const;
  void control_from_guest();
  void on_control(const ConsoleControl& m);
  void control_to_guest();
  bool control_due() const;
  bool take_to_guest() const { return !multiport_ || guest_open_; }

  const std::string path_;
  const UniqueFd listener_;

  // The worker's, from activate() until reset() joins it.
  std::vector<Virtqueue> queues_;
  std::vector<int> notify_fds_;
  VirtioInterrupt* interrupt_ = nullptr;
  IoRing* ring_ = nullptr;
  DescriptorChain chain_;  // pop()'s, kept so that its buffer list is not allocated per pass
  UniqueFd stop_fd_;
  UniqueFd peer_;
  bool accepting_ = false, reading_ = false, writing_ = false, broken_ = false;
  // After a failed accept (EMFILE, say: the connection stays queued and the next accept fails
  // at once) the next waits kAcceptRetry instead of spinning.
  bool accept_paused_ = false;
  __kernel_timespec accept_retry_{0, 100'000'000};
  std::vector<uint8_t> in_;  // read from the peer, not yet in the guest's buffers
  size_t in_at_ = 0;
  std::vector<uint8_t> out_;  // the guest's bytes being written to the peer
  size_t out_at_ = 0;
  std::vector<uint16_t> out_heads_;  // transmit chains whose bytes are in out_
  std::vector<bool> interrupt_due_;
  uint64_t notify_values_[4] = {}, stop_value_ = 0;
  // MULTIPORT. What the driver is owed is state, not a queue of messages, so a driver that
  // repeats itself cannot make the device hold more than one of each: DEVICE_ADD (once per
  // activation), PORT_NAME (after each PORT_READY), and PORT_OPEN whenever the peer's presence
  // differs from what it was last told (-1: nothing yet). The guest's end of the port is open
  // (its PORT_OPEN): only then do the peer's bytes go into its receive buffers, since Linux
  // throws away what arrives for a port nobody has open.
  bool multiport_ = false, add_due_ = false, add_sent_ = false, port_ready_ = false,
       name_due_ = false, guest_open_ = false;
  int told_open_ = -1;
  std::thread worker_;
  LogBudget warnings_{5, 1'000'000'000};

  std::atomic<uint64_t> to_guest_{0}, from_guest_{0}, wakeups_{0}, peers_{0}, accept_failures_{0};
};

}  // namespace shoal

#include "devices/virtio_net.hpp"

#include <linux/if_tun.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/io_ring.hpp"
#include "devices/virtio_worker.hpp"
#include "shoal/log.hpp"

namespace shoal {

namespace {

// Feature bits (5.1.3).
constexpr uint64_t kFCsum = 1ull << 0, kFGuestCsum = 1ull << 1, kFMac = 1ull << 5,
                   kFHostTso4 = 1ull << 11, kFHostTso6 = 1ull << 12, kFStatus = 1ull << 16;
constexpr uint16_t kReceiveQ = 0, kTransmitQ = 1;
constexpr uint16_t kLinkUp = 1;  // VIRTIO_NET_S_LINK_UP
// struct virtio_net_hdr: flags at 0, num_buffers at 10.
constexpr size_t kHeaderFlags = 0, kHeaderNumBuffers = 10;
// Frames each way per pass of the worker, so that a flood one way does not starve the other.
constexpr int kBurst = 64;
// io_uring tags: the notify reads carry their queue in the low bits.
constexpr uint64_t kNotifyTag = 1 << 8, kStopTag = 2 << 8, kPollTag = 3 << 8;

constexpr const char* kNetUsage = "expected tap=NAME[,mac=52:54:00:12:34:56]";

Result<std::array<uint8_t, 6>> parse_mac(const std::string& text) {
  std::array<uint8_t, 6> mac{};
  unsigned b[6];
  char tail = 0;
  if (text.size() != 17 || std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1],
                                       &b[2], &b[3], &b[4], &b[5], &tail) != 6)
    return Error("--net: mac=" + text + " is not six hex bytes like 52:54:00:12:34:56");
  for (size_t i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(b[i]);
  if ((mac[0] & 1) != 0) return Error("--net: mac=" + text + " is a multicast address");
  if (std::all_of(mac.begin(), mac.end(), [](uint8_t x) { return x == 0; }))
    return Error("--net: mac=" + text + " is all zero");
  return mac;
}

}  // namespace

Result<NetOptions> parse_net_option(const std::string& text) {
  NetOptions n;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq),
                      value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key == "tap" && !value.empty() && n.tap.empty()) {
      n.tap = value;
    } else if (key == "mac" && !n.mac_given) {
      auto mac = parse_mac(value);
      if (!mac) return mac.error();
      n.mac = *mac;
      n.mac_given = true;
    } else {
      return Error("--net: '" + item + "' in '" + text + "': " + kNetUsage);
    }
    at = comma + 1;
  }
  if (n.tap.empty()) return Error("--net: no tap= in '" + text + "': " + kNetUsage);
  return n;
}

std::array<uint8_t, 6> default_mac(size_t index) {
  return {0x52, 0x54, 0x00, 0x12, 0x34, static_cast<uint8_t>(0x56 + index)};
}

VirtioNet::VirtioNet(Tap tap, const std::array<uint8_t, 6>& mac)
    : tap_(std::move(tap)), mac_(mac), frame_(kStaging) {}

Result<std::unique_ptr<VirtioNet>> VirtioNet::open(const NetOptions& options,
                                                   const std::array<uint8_t, 6>& mac) {
  auto tap = Tap::open(options.tap);
  if (!tap) return tap.error();
  return std::unique_ptr<VirtioNet>(new VirtioNet(std::move(*tap), mac));
}

Result<std::vector<std::unique_ptr<VirtioDevice>>> VirtioNet::open_all(
    const std::vector<NetOptions>& nets) {
  std::vector<std::unique_ptr<VirtioDevice>> out;
  for (size_t i = 0; i < nets.size(); ++i) {
    auto net = open(nets[i], nets[i].mac_given ? nets[i].mac : default_mac(i));
    if (!net) return net.error();
    out.push_back(std::move(*net));
  }
  return out;
}

VirtioNet::~VirtioNet() {
  reset();
}

uint64_t VirtioNet::features() const {
  return kFCsum | kFGuestCsum | kFMac | kFHostTso4 | kFHostTso6 | kFStatus;
}

void VirtioNet::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // struct virtio_net_config up to status (5.1.4); the rest reads as zero.
  uint8_t config[8] = {};
  std::memcpy(config, mac_.data(), 6);
  std::memcpy(config + 6, &kLinkUp, 2);
  copy_config(config, offset, data);
}

Status VirtioNet::activate(std::vector<Virtqueue> queues, uint64_t features,
                           std::vector<int> notify_fds, VirtioInterrupt& interrupt) {
  reset();
  if (queues.size() != 2) return Error("the driver did not set up receiveq1 and transmitq1");
  // Frames with a checksum still to fill in reach the guest only if it said it can take them.
  if (Status s = tap_.set_offloads((features & kFGuestCsum) != 0 ? TUN_F_CSUM : 0); !s.ok())
    return s;
  stop_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
  if (!stop_fd_.valid()) return errno_error("eventfd");
  queues_ = std::move(queues);
  notify_fds_ = std::move(notify_fds);
  features_ = features;
  interrupt_ = &interrupt;
  interrupt_due_.assign(2, false);
  frame_size_ = 0;
  dropped_ = 0;
  tap_readable_ = true;
  polling_ = broken_ = tap_gone_ = false;
  worker_ = std::thread([this] { run(); });
  return {};
}

void VirtioNet::reset() {
  if (!worker_.joinable()) return;
  signal_eventfd(stop_fd_.get());
  worker_.join();
  queues_.clear();
  if (dropped_ != 0) log::debug("{}: {} frames dropped", name(), dropped_);
}

bool VirtioNet::work_waiting() const {
  if (broken_) return false;
  return queues_[kTransmitQ].has_available() ||
         ((frame_size_ != 0 || tap_readable_) && queues_[kReceiveQ].has_available());
}

void VirtioNet::run() {
  auto made = IoRing::create(8);
  if (!made) return interrupt_->needs_reset("io_uring: " + made.error().message());
  IoRing& ring = *made;
  for (uint16_t q = 0; q < 2; ++q)
    ring.queue_read(notify_fds_[q], &notify_values_[q], 8, kNotifyTag | q);
  ring.queue_read(stop_fd_.get(), &stop_value_, 8, kStopTag);
  bool stopping = false;
  auto handle = [&](uint64_t tag) {
    if (tag == kStopTag) {
      stopping = true;
    } else if (tag == kPollTag) {
      polling_ = false;
      tap_readable_ = true;
    } else {  // a notify
      const auto q = static_cast<uint16_t>(tag & 0xff);
      ring.queue_read(notify_fds_[q], &notify_values_[q], 8, tag);
    }
  };
  uint64_t tag = 0;
  int result = 0;
  // Nothing under way uses this device's buffers but the notify reads' 8 bytes, which the
  // ring's teardown cancels: the worker may stop at once.
  while (!stopping) {
    if (!broken_) {
      for (Virtqueue& q : queues_) q.set_notify(false);
      receive();
      transmit();
    }
    // The tap is watched only while a frame could go somewhere: a guest without receive
    // buffers is woken by its notify instead.
    if (!broken_ && !tap_readable_ && !polling_ && !tap_gone_ && frame_size_ == 0)
      polling_ = ring.queue_poll(tap_.fd(), POLLIN, kPollTag);
    if (ring.submit() < 0) log::warn("{}: io_uring submit: {}", name(), std::strerror(errno));
    virtio_raise_due(queues_, interrupt_due_, *interrupt_);
    // Completions first, even under a flood of frames that never lets the worker sleep: the
    // stop must get through.
    if (ring.peek(&tag, &result)) {
      do handle(tag);
      while (ring.peek(&tag, &result));
      continue;
    }
    if (virtio_work_before_sleep(queues_, ring, [this] { return work_waiting(); })) continue;
    if (Status s = ring.wait(&tag, &result); !s.ok()) {
      interrupt_->needs_reset(s.error().message());
      break;
    }
    handle(tag);
  }
}

void VirtioNet::receive() {
  Virtqueue& q = queues_[kReceiveQ];
  for (int n = 0; n < kBurst; ++n) {
    if (frame_size_ == 0) {
      if (!tap_readable_ || !q.has_available()) return;
      const ssize_t got = tap_.read(frame_.data(), frame_.size());
      if (got < 0) {
        // EAGAIN: nothing waiting. Anything else (EBADFD: the interface was deleted under
        // shoal) ends reception for good; poll would report the error again and again.
        if (got != -EAGAIN) {
          log::warn("{}: read: {}; the guest receives no more frames", name(),
                    std::strerror(static_cast<int>(-got)));
          tap_gone_ = true;
        }
        tap_readable_ = false;
        return;
      }
      if (static_cast<size_t>(got) <= Tap::kVnetHeader) continue;
      frame_size_ = static_cast<size_t>(got);
      // One chain holds the frame (no MRG_RXBUF), which the spec says num_buffers must say;
      // without GUEST_CSUM the device may not flag checksums (the tap sets DATA_VALID).
      const uint16_t one = 1;
      std::memcpy(frame_.data() + kHeaderNumBuffers, &one, 2);
      if ((features_ & kFGuestCsum) == 0) frame_[kHeaderFlags] = 0;
    }
    auto got = q.pop(chain_);
    if (!got) {
      broken_ = true;
      return interrupt_->needs_reset("receive queue: " + got.error().message());
    }
    if (!*got) return;  // the frame waits for a buffer
    size_t room = 0;
    for (const GuestBuffer& b : chain_.buffers) room += b.device_writable ? b.len : 0;
    uint32_t written = 0;
    if (room >= frame_size_) {
      for (const GuestBuffer& b : chain_.buffers) {
        if (!b.device_writable) continue;
        const size_t k = std::min<size_t>(b.len, frame_size_ - written);
        std::memcpy(b.host, frame_.data() + written, k);
        written += static_cast<uint32_t>(k);
        if (written == frame_size_) break;
      }
    } else {
      ++dropped_;  // larger than the buffer: the chain goes back empty, which Linux counts
    }
    q.push_used(chain_.head, written);
    interrupt_due_[kReceiveQ] = true;
    frame_size_ = 0;
  }
}

void VirtioNet::transmit() {
  Virtqueue& q = queues_[kTransmitQ];
  for (int n = 0; n < kBurst; ++n) {
    auto got = q.pop(chain_);
    if (!got) {
      broken_ = true;
      return interrupt_->needs_reset("transmit queue: " + got.error().message());
    }
    if (!*got) return;
    iov_.clear();
    size_t bytes = 0;
    for (const GuestBuffer& b : chain_.buffers)
      if (!b.device_writable) {
        iov_.push_back({b.host, b.len});
        bytes += b.len;
      }
    // The tap checks the header and the frame (the host kernel trusts neither); a chain too
    // short for a header or longer than any frame is not worth a system call.
    if (bytes <= Tap::kVnetHeader || bytes > kStaging ||
        tap_.write(iov_.data(), static_cast<int>(iov_.size())) < 0)
      ++dropped_;
    q.push_used(chain_.head, 0);
    interrupt_due_[kTransmitQ] = true;
  }
}

}  // namespace shoal

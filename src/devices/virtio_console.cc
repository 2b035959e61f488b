#include "devices/virtio_console.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/io_ring.hpp"
#include "devices/virtio_worker.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"

namespace shoal {

namespace {

constexpr uint16_t kReceiveQ = 0, kTransmitQ = 1, kControlReceiveQ = 2, kControlTransmitQ = 3;
// io_uring tags: the notify reads carry their queue in the low bits.
constexpr uint64_t kNotifyTag = 1 << 8, kStopTag = 2 << 8, kAcceptTag = 3 << 8, kReadTag = 4 << 8,
                   kWriteTag = 5 << 8, kAcceptRetryTag = 6 << 8;

}  // namespace

VirtioConsole::VirtioConsole(std::string path, UniqueFd listener)
    : path_(std::move(path)), listener_(std::move(listener)) {}

Result<std::unique_ptr<VirtioConsole>> VirtioConsole::listen(const std::string& path) {
  const std::string what = "--channel " + path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return Error(what + ": a socket path must be 1 to " + std::to_string(sizeof addr.sun_path - 1) +
                 " bytes");
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  // A socket left by an earlier run is replaced; anything else at the path is not ours.
  struct stat st {};
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_error(what + ": socket");
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Error(what + ": exists and is not a socket");
    // Someone listens there (another shoal): not ours to take.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() &&
        ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      return Error(what + ": another process listens on it");
    if (::unlink(path.c_str()) < 0) return errno_error(what + ": unlink");
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return errno_error(what + ": bind");
  if (::chmod(path.c_str(), 0600) < 0) return errno_error(what + ": chmod");
  if (::listen(fd.get(), 1) < 0) return errno_error(what + ": listen");
  return std::unique_ptr<VirtioConsole>(new VirtioConsole(path, std::move(fd)));
}

VirtioConsole::~VirtioConsole() {
  reset();
  ::unlink(path_.c_str());
}

uint64_t VirtioConsole::features() const {
  return kConsoleFMultiport;
}

void VirtioConsole::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // struct virtio_console_config: cols, rows (u16 each, 0: no size), max_nr_ports (u32: one
  // port), emerg_wr (u32; EMERG_WRITE is not offered).
  uint8_t config[12] = {};
  config[4] = 1;
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = offset + i < sizeof config ? config[offset + i] : 0;
}

ChannelCounters VirtioConsole::counters() const {
  return {to_guest_.load(), from_guest_.load(), wakeups_.load(), peers_.load(),
          accept_failures_.load()};
}

Status VirtioConsole::activate(std::vector<Virtqueue> queues, uint64_t features,
                               std::vector<int> notify_fds, VirtioInterrupt& interrupt) {
  reset();
  multiport_ = (features & kConsoleFMultiport) != 0;
  if (queues.size() != (multiport_ ? 4u : 2u))
    return Error(multiport_ ? "the driver took MULTIPORT but did not set up the control queues"
                            : "the driver did not set up both queues of port 0");
  stop_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
  if (!stop_fd_.valid()) return errno_error("eventfd");
  queues_ = std::move(queues);
  notify_fds_ = std::move(notify_fds);
  interrupt_ = &interrupt;
  interrupt_due_.assign(queues_.size(), false);
  add_due_ = add_sent_ = port_ready_ = name_due_ = guest_open_ = false;
  told_open_ = -1;
  in_.clear();
  in_at_ = 0;
  out_.clear();
  out_at_ = 0;
  out_heads_.clear();
  broken_ = accepting_ = accept_paused_ = reading_ = writing_ = false;
  peer_ = UniqueFd();
  worker_ = std::thread([this] { run(); });
  return {};
}

void VirtioConsole::reset() {
  if (!worker_.joinable()) return;
  signal_eventfd(stop_fd_.get());
  worker_.join();
  queues_.clear();
}

bool VirtioConsole::work_waiting() const {
  if (broken_) return false;
  if (multiport_ && (queues_[kControlTransmitQ].has_available() ||
                     (control_due() && queues_[kControlReceiveQ].has_available())))
    return true;
  return (take_to_guest() && in_at_ < in_.size() && queues_[kReceiveQ].has_available()) ||
         (peer_.valid() && !writing_ && queues_[kTransmitQ].has_available());
}

void VirtioConsole::run() {
  auto made = IoRing::create(16);
  if (!made) return interrupt_->needs_reset("io_uring: " + made.error().message());
  IoRing& ring = *made;
  ring_ = &ring;
  for (size_t q = 0; q < queues_.size(); ++q)
    ring.queue_read(notify_fds_[q], &notify_values_[q], 8, kNotifyTag | q);
  ring.queue_read(stop_fd_.get(), &stop_value_, 8, kStopTag);
  bool stopping = false;
  for (;;) {
    if (!stopping && !peer_.valid() && !accepting_ && !accept_paused_ && !reading_ && !writing_) {
      ring.queue_accept(listener_.get(), kAcceptTag);
      accepting_ = true;
    }
    if (!stopping && !broken_) {
      for (Virtqueue& q : queues_) q.set_notify(false);
      if (multiport_) control_from_guest();
      to_guest();
      from_guest();
      if (multiport_) control_to_guest();
    }
    if (ring.submit() < 0) log::warn("{}: io_uring submit: {}", name(), std::strerror(errno));
    virtio_raise_due(queues_, interrupt_due_, *interrupt_);
    // The reads and writes under way use this device's buffers: they end before it stops.
    if (stopping && !reading_ && !writing_) break;
    if (!stopping && virtio_work_before_sleep(queues_, ring, [this] { return work_waiting(); }))
      continue;
    uint64_t tag = 0;
    int result = 0;
    if (Status s = ring.wait(&tag, &result); !s.ok()) {
      interrupt_->needs_reset(s.error().message());
      break;
    }
    do {
      if (tag == kStopTag) {
        stopping = true;
        drop_peer();
      } else {
        handle(tag, result);
      }
    } while (ring.peek(&tag, &result));
  }
  // An accept that completed as the worker stopped: its socket is closed, not leaked.
  int result = 0;
  for (uint64_t tag = 0; ring.peek(&tag, &result);)
    if (tag == kAcceptTag && result >= 0) ::close(result);
  ring_ = nullptr;
  peer_ = UniqueFd();
  accepting_ = false;
}

void VirtioConsole::handle(uint64_t tag, int result) {
  if ((tag & ~0xffull) == kNotifyTag) {
    const auto q = static_cast<uint16_t>(tag & 0xff);
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    ring_->queue_read(notify_fds_[q], &notify_values_[q], 8, tag);
  } else if (tag == kAcceptTag) {
    accepting_ = false;
    if (result < 0) {
      accept_failures_.fetch_add(1, std::memory_order_relaxed);
      if (uint64_t held = 0; warnings_.allow(monotonic_ns(), &held))
        log::warn("{}: accept: {}; trying again in 100 ms{}", name(), std::strerror(-result),
                  held_back(held));
      accept_paused_ = ring_->queue_timeout(&accept_retry_, kAcceptRetryTag);
    } else {
      peer_ = UniqueFd(result);
      peers_.fetch_add(1, std::memory_order_relaxed);
      log::debug("{}: a peer connected", name());
    }
  } else if (tag == kAcceptRetryTag) {
    accept_paused_ = false;
  } else if (tag == kReadTag) {
    reading_ = false;
    if (result <= 0) return drop_peer();  // the peer closed (0) or failed
    in_.resize(static_cast<size_t>(result));
    in_at_ = 0;
  } else if (tag == kWriteTag) {
    writing_ = false;
    if (result > 0) out_at_ += static_cast<size_t>(result);
    if (result > 0 && out_at_ < out_.size()) {
      // A short write on a stream socket: the rest goes next.
      writing_ = ring_->queue_send(peer_.get(), out_.data() + out_at_,
                                   static_cast<unsigned>(out_.size() - out_at_), kWriteTag);
      return;
    }
    // Written, or lost with the peer: either way the guest gets its buffers back.
    from_guest_.fetch_add(out_at_, std::memory_order_relaxed);
    for (uint16_t head : out_heads_) queues_[kTransmitQ].push_used(head, 0);
    if (!out_heads_.empty()) interrupt_due_[kTransmitQ] = true;
    out_heads_.clear();
    out_.clear();
    out_at_ = 0;
    if (result <= 0) drop_peer();
  }
}

void VirtioConsole::drop_peer() {
  if (!peer_.valid()) return;
  // Ends a read or write still under way on it (its completion then clears the flag); the
  // bytes the peer had sent and the guest has not taken go with it.
  ::shutdown(peer_.get(), SHUT_RDWR);
  if (!reading_ && !writing_) peer_ = UniqueFd();
  in_.clear();
  in_at_ = 0;
}

void VirtioConsole::to_guest() {
  // MULTIPORT, the guest's end closed: the peer's bytes wait (and the socket is not read).
  if (!take_to_guest()) return;
  Virtqueue& q = queues_[kReceiveQ];
  DescriptorChain& chain = chain_;
  while (in_at_ < in_.size()) {
    auto got = q.pop(chain);
    if (!got) {
      broken_ = true;
      return interrupt_->needs_reset("receive queue: " + got.error().message());
    }
    if (!*got) return;  // no buffer: the peer's bytes wait (and the socket is not read)
    uint32_t written = 0;
    for (const GuestBuffer& b : chain.buffers) {
      if (!b.device_writable) continue;  // a receive buffer the device may not write: skipped
      const size_t n = std::min<size_t>(b.len, in_.size() - in_at_);
      std::memcpy(b.host, in_.data() + in_at_, n);
      in_at_ += n;
      written += static_cast<uint32_t>(n);
      if (in_at_ == in_.size()) break;
    }
    q.push_used(chain.head, written);
    to_guest_.fetch_add(written, std::memory_order_relaxed);
    interrupt_due_[kReceiveQ] = true;
  }
  if (peer_.valid() && !reading_) {
    in_.resize(kStaging);
    in_at_ = in_.size();  // nothing pending until the read completes
    reading_ = ring_->queue_read(peer_.get(), in_.data(), kStaging, kReadTag);
  }
}

void VirtioConsole::from_guest() {
  if (!peer_.valid() || writing_) return;
  Virtqueue& q = queues_[kTransmitQ];
  DescriptorChain& chain = chain_;
  while (out_.size() < kStaging) {
    auto got = q.pop(chain);
    if (!got) {
      broken_ = true;
      return interrupt_->needs_reset("transmit queue: " + got.error().message());
    }
    if (!*got) break;
    // A chain's bytes are copied whole, so one is bounded (Linux writes at most 32 KiB per
    // buffer): a guest cannot make shoal allocate more than twice kStaging here.
    uint64_t bytes = 0;
    for (const GuestBuffer& b : chain.buffers) bytes += b.device_writable ? 0 : b.len;
    if (bytes > kStaging) {
      broken_ = true;
      return interrupt_->needs_reset("transmit chain " + std::to_string(chain.head) + " holds " +
                                     std::to_string(bytes) + " bytes, more than " +
                                     std::to_string(kStaging));
    }
    for (const GuestBuffer& b : chain.buffers)
      if (!b.device_writable) out_.insert(out_.end(), b.host, b.host + b.len);
    out_heads_.push_back(chain.head);
  }
  if (out_heads_.empty()) return;
  if (out_.empty()) {  // only empty chains: nothing to send, but they go back
    for (uint16_t head : out_heads_) q.push_used(head, 0);
    out_heads_.clear();
    interrupt_due_[kTransmitQ] = true;
    return;
  }
  writing_ =
      ring_->queue_send(peer_.get(), out_.data(), static_cast<unsigned>(out_.size()), kWriteTag);
}

void VirtioConsole::control_from_guest() {
  Virtqueue& q = queues_[kControlTransmitQ];
  for (;;) {
    auto got = q.pop(chain_);
    if (!got) {
      broken_ = true;
      return interrupt_->needs_reset("control transmit queue: " + got.error().message());
    }
    if (!*got) return;
    auto m = parse_console_control(chain_);
    q.push_used(chain_.head, 0);
    interrupt_due_[kControlTransmitQ] = true;
    if (!m) {
      if (uint64_t held = 0; warnings_.allow(monotonic_ns(), &held))
        log::warn("{}: {}{}", name(), m.error().message(), held_back(held));
      continue;
    }
    on_control(*m);
  }
}

// The driver's side of the handshake: DEVICE_READY -> DEVICE_ADD port 0; PORT_READY ->
// PORT_NAME, then PORT_OPEN as the peer comes and goes (run()). No CONSOLE_PORT: the port is
// not a console.
void VirtioConsole::on_control(const ConsoleControl& m) {
  std::string problem;
  switch (m.event) {
    case ConsoleControl::kDeviceReady:
      if (m.value != 1)
        problem = "the driver failed to set the device up";
      else if (!add_sent_)
        add_due_ = true;  // the one port exists once: a repeated DEVICE_READY adds nothing
      break;
    case ConsoleControl::kPortReady:
      if (m.id != 0) {
        problem = "PORT_READY for port " + std::to_string(m.id) + ", which does not exist";
      } else if (m.value != 1) {
        problem = "the driver could not set port 0 up";
      } else {
        port_ready_ = name_due_ = true;
        told_open_ = -1;  // told again, after the name
        guest_open_ = false;
      }
      break;
    case ConsoleControl::kPortOpen:
      if (m.id != 0) {
        problem = "PORT_OPEN for port " + std::to_string(m.id) + ", which does not exist";
      } else {
        guest_open_ = m.value == 1;
        log::debug("{}: the guest {} port 0", name(), guest_open_ ? "opened" : "closed");
      }
      break;
    default:
      problem = "control event " + std::to_string(m.event) + " is not one a driver sends";
  }
  if (uint64_t held = 0; !problem.empty() && warnings_.allow(monotonic_ns(), &held))
    log::warn("{}: {}{}", name(), problem, held_back(held));
}

bool VirtioConsole::control_due() const {
  return add_due_ || (port_ready_ && (name_due_ || told_open_ != (peer_.valid() ? 1 : 0)));
}

// What the driver is owed, in order: DEVICE_ADD, PORT_NAME, then PORT_OPEN with whether a peer
// is connected now.
void VirtioConsole::control_to_guest() {
  Virtqueue& q = queues_[kControlReceiveQ];
  while (control_due()) {
    auto got = q.pop(chain_);
    if (!got) {
      broken_ = true;
      return interrupt_->needs_reset("control receive queue: " + got.error().message());
    }
    if (!*got) return;  // the messages wait for the driver's buffers
    std::vector<uint8_t> m;
    if (add_due_) {
      m = encode_console_control({0, ConsoleControl::kDeviceAdd, 0});
      add_due_ = false;
      add_sent_ = true;
    } else if (name_due_) {
      m = encode_console_control({0, ConsoleControl::kPortName, 1}, kPortName);
      name_due_ = false;
    } else {
      told_open_ = peer_.valid() ? 1 : 0;
      m = encode_console_control({0, ConsoleControl::kPortOpen, static_cast<uint16_t>(told_open_)});
    }
    q.push_used(chain_.head, copy_to_chain(m, chain_));
    interrupt_due_[kControlReceiveQ] = true;
  }
}

}  // namespace shoal

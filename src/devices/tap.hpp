// A tap network interface, as a virtio-net device's host end: owns the /dev/net/tun queue fd
// shoal attached to interface NAME. Frames carry a 12-byte virtio-net header (struct
// virtio_net_hdr_mrg_rxbuf, the virtio 1.x layout), so checksum and segmentation offloads pass
// between the guest and the host kernel unchanged. Non-blocking: reads and writes that would
// wait fail with EAGAIN, and readiness comes from poll.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <string>

#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class Tap {
 public:
  static constexpr size_t kVnetHeader = 12;

  // Attaches to tap interface `name`, creating it if it does not exist (that needs
  // CAP_NET_ADMIN; `ip tuntap add NAME mode tap user USER` makes one an unprivileged user may
  // attach to). Errors start with "--net tap=NAME".
  static Result<Tap> open(const std::string& name);
  Tap(Tap&&) noexcept = default;
  Tap& operator=(Tap&&) noexcept = default;
  Tap(const Tap&) = delete;
  Tap& operator=(const Tap&) = delete;

  const std::string& name() const { return name_; }
  int fd() const { return fd_.get(); }
  // Which offloads the host kernel may hand the guest (TUNSETOFFLOAD; TUN_F_* bits): with
  // none, it completes checksums and segments frames before they reach the tap.
  Status set_offloads(unsigned tun_flags);
  // One frame (header first) into `buf`: its size, or -errno (-EAGAIN: none waiting).
  ssize_t read(void* buf, size_t len);
  // One frame (header first) from the gathered buffers: bytes written, or -errno.
  ssize_t write(const iovec* iov, int count);

 private:
  Tap(std::string name, UniqueFd fd) : name_(std::move(name)), fd_(std::move(fd)) {}
  std::string name_;
  UniqueFd fd_;
};

}  // namespace shoal

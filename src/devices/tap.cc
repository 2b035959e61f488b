#include "devices/tap.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shoal {

Result<Tap> Tap::open(const std::string& name) {
  const std::string what = "--net tap=" + name;
  if (name.empty() || name.size() >= IFNAMSIZ)
    return Error(what + ": an interface name is 1 to " + std::to_string(IFNAMSIZ - 1) + " bytes");
  if (name.find_first_of("/ \t\n%:") != std::string::npos)
    return Error(what + ": not a valid interface name");
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT || errno == ENODEV)
      return Error(what + ": /dev/net/tun is missing (modprobe tun)");
    return errno_error(what + ": /dev/net/tun");
  }
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.c_str(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    if (errno == EPERM)
      return Error(what +
                   ": not permitted (creating a tap needs CAP_NET_ADMIN; a tap made with "
                   "`ip tuntap add " +
                   name + " mode tap user USER` is one USER may attach to)");
    if (errno == EBUSY) return Error(what + ": in use by another process");
    if (errno == EINVAL)
      return Error(what + ": not a tap interface (a tun, or one made for several queues)");
    return errno_error(what + ": TUNSETIFF");
  }
  // The header shoal and the guest use (virtio 1.x always has num_buffers); the tap default
  // is the 10-byte legacy one.
  int header = static_cast<int>(kVnetHeader);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &header) < 0)
    return errno_error(what + ": TUNSETVNETHDRSZ");
  Tap tap(name, std::move(fd));
  if (Status s = tap.set_offloads(0); !s.ok()) return s.error();
  return tap;
}

Status Tap::set_offloads(unsigned tun_flags) {
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(tun_flags)) < 0)
    return errno_error("tap " + name_ + ": TUNSETOFFLOAD");
  return {};
}

ssize_t Tap::read(void* buf, size_t len) {
  const ssize_t n = ::read(fd_.get(), buf, len);
  return n < 0 ? -errno : n;
}

ssize_t Tap::write(const iovec* iov, int count) {
  const ssize_t n = ::writev(fd_.get(), iov, count);
  return n < 0 ? -errno : n;
}

}  // namespace shoal

#include "memory/userfaultfd.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

namespace shoal {

namespace {

constexpr const char* kPermissionHint =
    " (userfaultfd is not permitted for this user: set the sysctl vm.unprivileged_userfaultfd=1, "
    "give the user read-write access to /dev/userfaultfd, or run shoal with CAP_SYS_PTRACE)";

// A new userfaultfd: the syscall first, then /dev/userfaultfd, which a device ACL may open to
// users the sysctl does not cover.
int new_uffd() {
  const int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd >= 0 || (errno != EPERM && errno != ENOSYS)) return fd;
  // Whatever goes wrong with the device, the syscall's errno (EPERM) is the one to report.
  const int saved = errno;
  const int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    errno = saved;
    return -1;
  }
  const int ufd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
  close(dev);
  errno = ufd < 0 ? saved : 0;
  return ufd;
}

}  // namespace

Result<Userfaultfd> Userfaultfd::open(bool want_move, bool want_thread_id) {
  // The API handshake happens once per fd, so probe the kernel's features on a throwaway one.
  UniqueFd probe(new_uffd());
  if (!probe.valid()) {
    const int err = errno;
    return Error(std::string("userfaultfd: ") + std::strerror(err) +
                 (err == EPERM || err == EACCES ? kPermissionHint : ""));
  }
  uffdio_api api{};
  api.api = UFFD_API;
  if (ioctl(probe.get(), UFFDIO_API, &api) < 0) return errno_error("userfaultfd: UFFDIO_API");
  const uint64_t available = api.features;

  Userfaultfd u;
  u.fd_ = UniqueFd(new_uffd());
  if (!u.fd_.valid()) return errno_error("userfaultfd");
  const uint64_t requested = (want_move ? (available & UFFD_FEATURE_MOVE) : 0) |
                             (want_thread_id ? (available & UFFD_FEATURE_THREAD_ID) : 0);
  api = {};
  api.api = UFFD_API;
  api.features = requested;
  if (ioctl(u.fd(), UFFDIO_API, &api) < 0) return errno_error("userfaultfd: UFFDIO_API");
  u.features_ = requested;
  return u;
}

Status Userfaultfd::register_missing(void* addr, uint64_t len) const {
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(addr);
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (ioctl(fd(), UFFDIO_REGISTER, &reg) < 0) return errno_error("UFFDIO_REGISTER");
  if (!(reg.ioctls & (uint64_t{1} << _UFFDIO_COPY)))
    return Error("UFFDIO_REGISTER: the range does not support UFFDIO_COPY");
  return {};
}

Status Userfaultfd::unregister(void* addr, uint64_t len) const {
  uffdio_range range{reinterpret_cast<uint64_t>(addr), len};
  if (ioctl(fd(), UFFDIO_UNREGISTER, &range) < 0) return errno_error("UFFDIO_UNREGISTER");
  return {};
}

Status Userfaultfd::register_missing_wp(void* addr, uint64_t len) const {
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(addr);
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
  if (ioctl(fd(), UFFDIO_REGISTER, &reg) < 0) return errno_error("UFFDIO_REGISTER (missing + wp)");
  if (!(reg.ioctls & (uint64_t{1} << _UFFDIO_WRITEPROTECT)))
    return Error("UFFDIO_REGISTER: the range does not support UFFDIO_WRITEPROTECT");
  return {};
}

int Userfaultfd::copy(uint64_t dst, uint64_t src, uint64_t len, int64_t* done,
                      bool write_protect) const {
  uffdio_copy c{};
  c.dst = dst;
  c.src = src;
  c.len = len;
  c.mode = write_protect ? UFFDIO_COPY_MODE_WP : 0;
  const int rc = ioctl(fd(), UFFDIO_COPY, &c);
  *done = c.copy > 0 ? c.copy : 0;
  return rc < 0 ? -errno : 0;
}

int Userfaultfd::zeropage(uint64_t dst, uint64_t len, int64_t* done) const {
  uffdio_zeropage z{};
  z.range.start = dst;
  z.range.len = len;
  const int rc = ioctl(fd(), UFFDIO_ZEROPAGE, &z);
  *done = z.zeropage > 0 ? z.zeropage : 0;
  return rc < 0 ? -errno : 0;
}

int Userfaultfd::move(uint64_t dst, uint64_t src, uint64_t len, int64_t* done) const {
  uffdio_move m{};
  m.dst = dst;
  m.src = src;
  m.len = len;
  const int rc = ioctl(fd(), UFFDIO_MOVE, &m);
  *done = m.move > 0 ? m.move : 0;
  return rc < 0 ? -errno : 0;
}

int Userfaultfd::write_protect(uint64_t addr, uint64_t len, bool protect, bool wake) const {
  uffdio_writeprotect w{};
  w.range.start = addr;
  w.range.len = len;
  w.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
           (!protect && !wake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
  return ioctl(fd(), UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

int Userfaultfd::wake(uint64_t addr, uint64_t len) const {
  uffdio_range r{addr, len};
  return ioctl(fd(), UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

}  // namespace shoal

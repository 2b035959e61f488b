#include "base/io_ring.hpp"

#include <sys/socket.h>

#include <cstring>
#include <utility>

namespace shoal {

Result<IoRing> IoRing::create(unsigned entries) {
  IoRing r;
  const int rc = io_uring_queue_init(entries, &r.ring_, 0);
  if (rc < 0) return errno_error("io_uring_queue_init", -rc);
  r.live_ = true;
  return r;
}

IoRing::IoRing(IoRing&& o) noexcept : ring_(o.ring_), live_(std::exchange(o.live_, false)) {}

IoRing& IoRing::operator=(IoRing&& o) noexcept {
  if (this != &o) {
    if (live_) io_uring_queue_exit(&ring_);
    ring_ = o.ring_;
    live_ = std::exchange(o.live_, false);
  }
  return *this;
}

IoRing::~IoRing() {
  if (live_) io_uring_queue_exit(&ring_);
}

bool IoRing::queue_madvise(void* addr, uint32_t len, int advice, uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  io_uring_prep_madvise(sqe, addr, len, advice);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool IoRing::queue_readv(int fd, const iovec* iov, unsigned count, uint64_t offset,
                         uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  io_uring_prep_readv(sqe, fd, iov, count, offset);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool IoRing::queue_writev(int fd, const iovec* iov, unsigned count, uint64_t offset,
                          uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  io_uring_prep_writev(sqe, fd, iov, count, offset);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool IoRing::queue_read(int fd, void* buf, unsigned len, uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  io_uring_prep_read(sqe, fd, buf, len, 0);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool IoRing::queue_send(int fd, const void* buf, unsigned len, uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool IoRing::queue_accept(int fd, uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool IoRing::queue_timeout(const __kernel_timespec* after, uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  // liburing's prototype is not const; the kernel only reads it.
  io_uring_prep_timeout(sqe, const_cast<__kernel_timespec*>(after), 0, 0);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool IoRing::queue_poll(int fd, unsigned events, uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  io_uring_prep_poll_add(sqe, fd, events);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

bool IoRing::queue_fsync(int fd, uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;
  io_uring_prep_fsync(sqe, fd, 0);
  io_uring_sqe_set_data64(sqe, user_data);
  return true;
}

int IoRing::submit() {
  return io_uring_submit(&ring_);
}

Status IoRing::wait(uint64_t* user_data, int* result) {
  io_uring_cqe* cqe = nullptr;
  int rc;
  do {
    rc = io_uring_wait_cqe(&ring_, &cqe);
  } while (rc == -EINTR);
  if (rc < 0) return errno_error("io_uring_wait_cqe", -rc);
  *user_data = io_uring_cqe_get_data64(cqe);
  *result = cqe->res;
  io_uring_cqe_seen(&ring_, cqe);
  return {};
}

bool IoRing::peek(uint64_t* user_data, int* result) {
  io_uring_cqe* cqe = nullptr;
  if (io_uring_peek_cqe(&ring_, &cqe) != 0 || cqe == nullptr) return false;
  *user_data = io_uring_cqe_get_data64(cqe);
  *result = cqe->res;
  io_uring_cqe_seen(&ring_, cqe);
  return true;
}

}  // namespace shoal

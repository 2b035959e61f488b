// Owns one io_uring (liburing); move-only. What the zero pool's refill worker (madvise) and the
// virtio-blk worker (vectored reads and writes, fsync, reads of its notify eventfds) queue,
// submit and reap.
// Kernel hazard: tearing a ring down (the destructor) finishes in a kworker, which queues task
// work with TWA_SIGNAL to every thread that used the ring. A later blocking call on such a
// thread (a recv with SO_RCVTIMEO, say) can fail with EINTR. Give a ring a thread of its own,
// as the device workers do, or retry on EINTR.
#pragma once

#include <liburing.h>

#include <sys/uio.h>

#include <cstdint>

#include "shoal/status.hpp"

namespace shoal {

class IoRing {
 public:
  static Result<IoRing> create(unsigned entries);
  IoRing(IoRing&& o) noexcept;
  IoRing& operator=(IoRing&& o) noexcept;
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;
  ~IoRing();

  // Queues madvise(addr, len, advice) tagged with `user_data`; false when the SQ is full.
  // liburing 2.3 takes a 32-bit length: callers keep len < 4 GiB.
  bool queue_madvise(void* addr, uint32_t len, int advice, uint64_t user_data);
  // preadv/pwritev(fd, iov, count, offset), read(fd, buf, len) and fsync(fd), tagged with
  // `user_data`; false when the SQ is full. `iov` and `buf` must live until the completion.
  bool queue_readv(int fd, const iovec* iov, unsigned count, uint64_t offset, uint64_t user_data);
  bool queue_writev(int fd, const iovec* iov, unsigned count, uint64_t offset, uint64_t user_data);
  bool queue_read(int fd, void* buf, unsigned len, uint64_t user_data);
  // send(fd, buf, len, MSG_NOSIGNAL): a socket whose peer is gone fails with EPIPE instead of
  // killing the process with SIGPIPE (io_uring may run the send on the submitting thread).
  bool queue_send(int fd, const void* buf, unsigned len, uint64_t user_data);
  // accept4(fd, NULL, NULL, SOCK_CLOEXEC): the result is the new socket.
  bool queue_accept(int fd, uint64_t user_data);
  bool queue_fsync(int fd, uint64_t user_data);
  // Completes (with -ETIME) after `*after`, which must live until then.
  bool queue_timeout(const __kernel_timespec* after, uint64_t user_data);
  // A one-shot poll(fd, events): the result is the events that are ready.
  bool queue_poll(int fd, unsigned events, uint64_t user_data);
  // Submits what is queued; returns how many or -errno.
  int submit();
  // Waits for one completion: its user_data and result (-errno on failure).
  Status wait(uint64_t* user_data, int* result);
  // A completion if one is ready (true), without waiting.
  bool peek(uint64_t* user_data, int* result);
  // Whether a completion is ready, without taking it (a load from the shared CQ ring). A poll
  // or socket read completes through task work that interrupts this thread even while it spins
  // in userspace (the ring is not set up with COOP_TASKRUN), so a spinning caller sees it.
  bool completion_ready() const { return io_uring_cq_ready(&ring_) > 0; }

 private:
  IoRing() = default;
  io_uring ring_{};
  bool live_ = false;
};

}  // namespace shoal

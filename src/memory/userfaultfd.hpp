// Owns one userfaultfd. The hot-path calls (copy, move, wake) return 0 or -errno and never
// allocate; the caller decides what EEXIST / EAGAIN / ENOENT / EBUSY mean for its batch.
#pragma once

#include <linux/userfaultfd.h>

#include <cstdint>

#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

// Debian 12's kernel headers predate UFFDIO_MOVE (Linux 6.8); the ABI is stable.
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
struct uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
  __u64 mode;
  __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif

namespace shoal {

class Userfaultfd {
 public:
  // Opens a non-blocking userfaultfd with the MISSING fault API (and MOVE when the kernel has
  // it and `want_move`). A permission problem names the sysctl and device to fix.
  // `want_thread_id`: fault messages name the faulting thread (UFFD_FEATURE_THREAD_ID), where
  // the kernel has it.
  static Result<Userfaultfd> open(bool want_move, bool want_thread_id = false);

  int fd() const { return fd_.get(); }
  bool has_move() const { return (features_ & UFFD_FEATURE_MOVE) != 0; }
  uint64_t features() const { return features_; }

  Status register_missing(void* addr, uint64_t len) const;
  // MISSING and WRITEPROTECT faults both (a pod's coherent memory: shared copies are mapped
  // write-protected, so a local write to one is a WP fault).
  Status register_missing_wp(void* addr, uint64_t len) const;
  // Ends fault handling for the range. The kernel wakes every thread waiting on a fault there,
  // and they, like any later touch, are then served by the kernel itself.
  Status unregister(void* addr, uint64_t len) const;

  // Each returns 0 or -errno; `*done` gets the bytes the kernel completed (also on partial
  // failure, where the kernel reports them).
  // `write_protect`: the new pages are mapped write-protected (UFFDIO_COPY_MODE_WP).
  int copy(uint64_t dst, uint64_t src, uint64_t len, int64_t* done,
           bool write_protect = false) const;
  int move(uint64_t dst, uint64_t src, uint64_t len, int64_t* done) const;
  // Maps the kernel's shared zero page read-only over [dst, dst + len): no memory is used
  // until the guest writes (the kernel then copies on write, without a userfault).
  int zeropage(uint64_t dst, uint64_t len, int64_t* done) const;
  int wake(uint64_t addr, uint64_t len) const;
  // Sets or clears write protection of present pages. Setting it flushes the TLBs (and KVM's
  // mappings, through the MMU notifier) before returning, so no vCPU can still write the page
  // afterwards. Clearing it wakes threads waiting on the range unless `wake` is false.
  int write_protect(uint64_t addr, uint64_t len, bool protect, bool wake = true) const;

 private:
  UniqueFd fd_;
  uint64_t features_ = 0;
};

}  // namespace shoal

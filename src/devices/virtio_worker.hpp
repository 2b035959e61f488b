// What the virtio devices' worker threads (virtio-blk, virtio-console) do alike around their
// io_uring waits: poll before sleeping, and raise the interrupts a pass made due.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "base/io_ring.hpp"
#include "devices/virtio_mmio.hpp"
#include "devices/virtqueue.hpp"
#include "shoal/clock.hpp"

namespace shoal {

// How long an idle worker keeps looking at its rings before notifications go back on: a
// driver that submits again within this saves its notify (an exit: ~6 us in the kernel, ~40 us
// to userspace on the nested hosts) and the worker's wake-up.
inline constexpr uint64_t kVirtioIdlePollNs = 50'000;

// Before a worker sleeps: polls `work` for kVirtioIdlePollNs, then lets the driver notify
// again and looks once more (a chain made available between the last look and the flag is
// seen then). True when there is work after all. False also when one of the ring's own
// completions (a socket read, a tap poll, a send) came in while it polled: the caller's wait
// then returns at once, and notifications stay off until its next pass turns them off anyway.
// Without that look a peer's answer waited out the whole poll: a strict request/response
// round trip on the channel took the full 50 us more.
template <class Work>
bool virtio_work_before_sleep(std::vector<Virtqueue>& queues, const IoRing& ring, Work work) {
  const uint64_t until = monotonic_ns() + kVirtioIdlePollNs;
  while (monotonic_ns() < until) {
    if (work()) return true;
    if (ring.completion_ready()) return false;
    __builtin_ia32_pause();
  }
  for (Virtqueue& q : queues) q.set_notify(true);
  return work();
}

// One interrupt for each queue whose used ring moved (`due`, cleared here), unless its driver
// asked for none.
inline void virtio_raise_due(std::vector<Virtqueue>& queues, std::vector<bool>& due,
                             VirtioInterrupt& interrupt) {
  // used->idx stores before the avail->flags loads: the driver's enable_cb stores the flags,
  // then fences and reads used->idx; without this fence both could miss the other.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (size_t q = 0; q < queues.size(); ++q)
    if (due[q]) {
      due[q] = false;
      if (queues[q].interrupt_wanted()) interrupt.used_buffers();
    }
}

}  // namespace shoal

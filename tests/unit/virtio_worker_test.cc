// The virtio workers' idle poll (devices/virtio_worker.hpp), without a device: what ends it.
#include <sys/eventfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include "devices/virtio_worker.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {
namespace {

// A peer's answer (here an eventfd read) that completes while the worker polls its rings must
// end the poll: before, the answer waited out the whole 50 us window, every round trip.
// Each test's ring lives on a thread of its own, as the devices' rings do. The kernel tears a
// ring down in a kworker that then queues task work with TWA_SIGNAL to every thread that used
// it: a later blocking call with a timeout on that thread (recv with SO_RCVTIMEO) fails with
// EINTR. On the test thread that broke VirtioNet's recv 1 time in ~10.
template <class Body>
void on_own_thread(Body body) {
  std::thread(body).join();
}

void poll_ends_at_a_completion() {
  auto made = IoRing::create(4);
  ASSERT_TRUE(made.ok()) << made.error().message();
  IoRing& ring = *made;
  UniqueFd fd(eventfd(1, EFD_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  uint64_t value = 0;
  ASSERT_TRUE(ring.queue_read(fd.get(), &value, 8, 7));
  ASSERT_EQ(ring.submit(), 1);
  while (!ring.completion_ready()) __builtin_ia32_pause();
  std::vector<Virtqueue> no_queues;
  int looks = 0;
  EXPECT_FALSE(virtio_work_before_sleep(no_queues, ring, [&] { return ++looks, false; }));
  // One look at the rings, then the completion: not the thousands of looks of a full poll.
  EXPECT_EQ(looks, 1);
  uint64_t tag = 0;
  int result = 0;
  ASSERT_TRUE(ring.peek(&tag, &result));
  EXPECT_EQ(tag, 7u);
  EXPECT_EQ(result, 8);
}

TEST(VirtioWorker, APollEndsAsSoonAsTheRingHasACompletion) {
  on_own_thread(poll_ends_at_a_completion);
}

TEST(VirtioWorker, WithNothingToDoThePollRunsItsWindowThenLooksOnceMore) {
  on_own_thread([] {
    auto made = IoRing::create(4);
    ASSERT_TRUE(made.ok()) << made.error().message();
    std::vector<Virtqueue> no_queues;
    int looks = 0;
    EXPECT_FALSE(virtio_work_before_sleep(no_queues, *made, [&] { return ++looks, false; }));
    EXPECT_GT(looks, 2);
    // Work that shows up during the poll is taken at once.
    looks = 0;
    EXPECT_TRUE(virtio_work_before_sleep(no_queues, *made, [&] { return ++looks == 3; }));
    EXPECT_EQ(looks, 3);
  });
}

}  // namespace
}  // namespace shoal

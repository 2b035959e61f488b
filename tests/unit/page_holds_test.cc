#include "memory/page_holds.hpp"

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "memory/thread_halt.hpp"

namespace shoal {
namespace {

constexpr uint64_t kUs = 1000;

TEST(PageHolds, APageStaysForTheHoldAfterItArrives) {
  PageHolds h(200 * kUs, 3200 * kUs);
  EXPECT_EQ(h.held_until(7, 0), 0u);  // never arrived: nothing to wait for
  h.installed(7, /*tid=*/0, 1000 * kUs);
  EXPECT_EQ(h.held_until(7, 1100 * kUs), 1200 * kUs);
  EXPECT_EQ(h.held_until(7, 1200 * kUs), 0u);
  EXPECT_EQ(h.pages_held(), 0u);  // once over, forgotten
}

TEST(PageHolds, APageStaysWhileTheThreadThatFaultedOnItGoesOnFaulting) {
  PageHolds h(200 * kUs, 3200 * kUs);
  // A page walk: thread 41 gets the top table, then faults on the next levels one by one.
  h.faulted(41, 0);
  h.installed(1, 41, 100 * kUs);
  h.faulted(41, 250 * kUs);
  EXPECT_EQ(h.held_until(1, 300 * kUs), 450 * kUs);
  h.faulted(41, 400 * kUs);
  EXPECT_EQ(h.held_until(1, 450 * kUs), 600 * kUs);
  // Another thread's faults do not extend it.
  h.faulted(42, 550 * kUs);
  EXPECT_EQ(h.held_until(1, 600 * kUs), 0u);
}

TEST(PageHolds, APageStaysWhileItsThreadWaitsForTheNextPage) {
  PageHolds h(200 * kUs, 3200 * kUs);
  h.faulted(41, 0);
  h.installed(1, 41, 100 * kUs);
  // Thread 41 faults on the next table at 150 us and waits for it for a long time.
  h.faulted(41, 150 * kUs);
  h.wait_began(41);
  EXPECT_EQ(h.held_until(1, 1000 * kUs), 1200 * kUs);  // still waiting: held on
  EXPECT_EQ(h.held_until(1, 2000 * kUs), 2200 * kUs);
  h.wait_ended(41, 2500 * kUs);                        // the page came: it runs again
  EXPECT_EQ(h.held_until(1, 2600 * kUs), 2700 * kUs);  // a hold from the end of the wait
  EXPECT_EQ(h.held_until(1, 2700 * kUs), 0u);
  // Even a wait that never ends lets a page go at the limit.
  h.installed(2, 41, 5000 * kUs);
  h.wait_began(41);
  EXPECT_EQ(h.held_until(2, 8000 * kUs), 8200 * kUs);
  EXPECT_EQ(h.held_until(2, 8200 * kUs), 0u);
}

TEST(PageHolds, AThreadThatNeverStopsFaultingHoldsAPageNoLongerThanTheLimit) {
  PageHolds h(200 * kUs, 1000 * kUs);
  h.installed(3, 9, 0);
  for (uint64_t t = 0; t < 1000 * kUs; t += 100 * kUs) {
    h.faulted(9, t);
    EXPECT_NE(h.held_until(3, t), 0u) << t;
  }
  h.faulted(9, 1000 * kUs);
  EXPECT_EQ(h.held_until(3, 1000 * kUs), 0u);
}

TEST(PageHolds, APageThatArrivesAgainStartsAFreshHold) {
  PageHolds h(200 * kUs, 400 * kUs);
  h.installed(5, 0, 0);
  h.installed(5, 0, 300 * kUs);
  // The first arrival is forgotten by its age; the second still holds.
  h.installed(6, 0, 450 * kUs);
  EXPECT_EQ(h.held_until(5, 450 * kUs), 500 * kUs);
  h.installed(8, 0, 2000 * kUs);
  EXPECT_EQ(h.pages_held(), 1u);  // 5 and 6 are past the longest hold
}

TEST(PageHolds, AWaitKeepsPagesOnlyFromHostsThatYield) {
  PageHolds h(200 * kUs, 3200 * kUs);
  // Thread 41 holds a walk's first table and waits for the next, which another host holds
  // and waits with in turn. Taken for a host that yields to this one, the page stays while
  // 41 waits; taken for one this host yields to, it goes after the plain hold.
  h.faulted(41, 0);
  h.installed(1, 41, 100 * kUs);
  h.faulted(41, 150 * kUs);
  h.wait_began(41);
  EXPECT_EQ(h.held_until(1, 1000 * kUs, /*waits_count=*/true), 1200 * kUs);
  EXPECT_EQ(h.held_until(1, 1000 * kUs, /*waits_count=*/false), 0u);
}

TEST(PageHolds, AThreadAsleepInTheGuestsHaltLetsItsPagesGoAtOnce) {
  std::set<uint32_t> halted;
  int asked = 0;
  PageHolds h(200 * kUs, 3200 * kUs, [&](uint32_t tid) {
    ++asked;
    return halted.count(tid) != 0;
  });
  h.faulted(41, 0);
  h.installed(1, 41, 100 * kUs);
  h.installed(2, 41, 100 * kUs);
  EXPECT_EQ(h.held_until(1, 150 * kUs), 300 * kUs);  // running: the hold stands
  halted.insert(41);
  EXPECT_EQ(h.held_until(1, 160 * kUs), 0u);  // the vCPU idles: nothing uses the page
  // A thread waiting for a page sleeps too, but in the fault: its wait keeps the pages.
  h.wait_began(41);
  asked = 0;
  EXPECT_EQ(h.held_until(2, 170 * kUs), 370 * kUs);
  EXPECT_EQ(asked, 0);
  // A page whose hold is over does not ask (no /proc read for nothing).
  h.wait_ended(41, 200 * kUs);
  EXPECT_EQ(h.held_until(2, 10'000 * kUs), 0u);
  EXPECT_EQ(asked, 0);
}

TEST(ThreadHalt, OnlyKvmsHaltCountsAsHalted) {
  EXPECT_TRUE(wchan_is_kvm_halt("kvm_vcpu_block"));
  EXPECT_TRUE(wchan_is_kvm_halt("kvm_vcpu_halt\n"));
  EXPECT_FALSE(wchan_is_kvm_halt("handle_userfault"));  // waiting for a page
  EXPECT_FALSE(wchan_is_kvm_halt("0"));                 // running, or names hidden
  EXPECT_FALSE(wchan_is_kvm_halt(""));
  EXPECT_FALSE(wchan_is_kvm_halt("kvm_vcpu_blocking"));
  // A real thread of this process asleep elsewhere, a running one, and one that is gone.
  std::atomic<uint32_t> tid{0};
  std::atomic<bool> stop{false};
  std::thread sleeper([&] {
    tid = static_cast<uint32_t>(::syscall(SYS_gettid));
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (tid == 0) std::this_thread::yield();
  EXPECT_FALSE(thread_halted_in_kvm(tid));
  EXPECT_FALSE(thread_halted_in_kvm(static_cast<uint32_t>(::syscall(SYS_gettid))));
  stop = true;
  sleeper.join();
  EXPECT_FALSE(thread_halted_in_kvm(tid));
}

TEST(WaitPriority, TheFirstPlaceGoesRoundTheHostsInTurn) {
  constexpr uint64_t kTurn = 320'000 * kUs;
  // Turn 0 (wall clock in [0, 320 ms)): 0 before 1 before 2.
  EXPECT_TRUE(wait_outranks(0, 1, 3, 0, kTurn));
  EXPECT_TRUE(wait_outranks(1, 2, 3, 319'999 * kUs, kTurn));
  EXPECT_FALSE(wait_outranks(2, 0, 3, 0, kTurn));
  // Turn 1: 1 before 2 before 0.
  EXPECT_TRUE(wait_outranks(1, 2, 3, kTurn, kTurn));
  EXPECT_TRUE(wait_outranks(2, 0, 3, kTurn, kTurn));
  EXPECT_FALSE(wait_outranks(0, 1, 3, kTurn, kTurn));
  // Turn 5 (5 mod 3 = 2): 2 before 0 before 1. Of any two hosts exactly one outranks.
  for (uint32_t a = 0; a < 3; ++a) {
    for (uint32_t b = 0; b < 3; ++b) {
      if (a != b) {
        EXPECT_NE(wait_outranks(a, b, 3, 5 * kTurn, kTurn),
                  wait_outranks(b, a, 3, 5 * kTurn, kTurn));
      }
    }
  }
  EXPECT_TRUE(wait_outranks(2, 0, 3, 5 * kTurn + 1, kTurn));
  EXPECT_TRUE(wait_outranks(0, 1, 3, 5 * kTurn + 1, kTurn));
  // Two hosts take turns; no turn length, or a pod size not known: the lower number first.
  EXPECT_FALSE(wait_outranks(0, 1, 2, kTurn, kTurn));
  EXPECT_TRUE(wait_outranks(0, 1, 2, 2 * kTurn, kTurn));
  EXPECT_TRUE(wait_outranks(0, 1, 2, kTurn, 0));
  EXPECT_TRUE(wait_outranks(0, 1, 1, kTurn, kTurn));
  EXPECT_FALSE(wait_outranks(1, 0, 1, kTurn, kTurn));
}

}  // namespace
}  // namespace shoal

// How long a page that just arrived stays on this host before a recall or invalidation may take
// it away again, so that the vCPU that faulted on it gets to use it: without a hold, two
// hosts' vCPUs can snatch a page back and forth with neither running (a livelock).
//
// One instruction can need several pages at once: a guest page walk reads up to four page
// tables and then the data page, and the hardware walker's reads of the page tables fault as
// writes (Intel with EPT A/D bits, KVM's default; AMD NPT too, as QEMU's emulation of it
// shows), so page tables that every vCPU walks are write-shared between hosts. A fixed hold
// releases the first of those pages before the last has arrived when the pages come slowly.
// So a page stays while the thread that faulted on it is still faulting: while that thread
// waits for another page, and until `hold_ns` after the latest of the page's arrival, that
// thread's last fault and the end of its last wait; never longer than `max_hold_ns` after
// the page's arrival (a thread that faults without end does not keep a page from the other
// hosts for longer than that).
//
// A thread asleep in the guest's HLT (the caller's `halted` says so; a vCPU thread idling)
// uses none of its pages: they go at once, whatever the hold. In a Linux boot across two
// hosts each IPI to the idle CPU brought the kernel's page tables over to it, and vCPU 0 then
// waited out the plain hold after the idle CPU had gone back to sleep.
//
// Two hosts that each hold part of the pages a walk needs and wait for the rest would keep
// them until the limit and then swap halves, again and again. So a wait keeps pages only
// against a host of lower priority: the caller says whether the host a page is taken for
// yields to this one (wait_outranks below), and a thread's pages go to a host it yields to
// after the plain hold, wait or no wait.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>
#include <utility>

namespace shoal {

// Whether a wait on host `self` outranks one on host `taker` in a pod of `hosts` hosts, at
// wall-clock time `now_ns`: the first place rotates every `turn_ns` (0: host 0 always first),
// then the hosts in ring order after it. A fixed order (the lowest number first) starved the
// last host: its vCPU lost every tie for the pages all vCPUs walk, and the others then waited
// for that vCPU to answer an IPI (Linux's TLB shootdowns, text patching). Every host computes
// the order from its own clock: hosts whose clocks disagree by d both keep (or both yield)
// for d around a turn's edge, which the limit on a hold (max_hold_ns) bounds; the protocol's
// correctness does not depend on it, only who waits.
bool wait_outranks(uint32_t self, uint32_t taker, uint32_t hosts, uint64_t now_ns,
                   uint64_t turn_ns);

class PageHolds {
 public:
  // `halted(tid)`: whether thread tid sleeps in the guest's HLT now (none: never assumed);
  // asked only for a thread whose page is held and wanted, so a true ends that hold.
  PageHolds(uint64_t hold_ns, uint64_t max_hold_ns, std::function<bool(uint32_t tid)> halted = {});

  // Thread `tid` faulted (any page, served from anywhere) at `now_ns`.
  void faulted(uint32_t tid, uint64_t now_ns);
  // Thread `tid` waits for a page from another host / that wait ended at `now_ns`.
  void wait_began(uint32_t tid);
  void wait_ended(uint32_t tid, uint64_t now_ns);
  // `page` was installed for a fault of thread `tid` (0: not for a fault, a read-ahead).
  void installed(uint64_t page, uint32_t tid, uint64_t now_ns);
  // When a recall or invalidation of `page` may proceed: 0 now, else the time to try again
  // (the thread may fault again meanwhile, which can push it further, up to the limit).
  // `waits_count`: whether the thread's wait for another page keeps this one (false when
  // the page is taken for a host that has priority over this one).
  uint64_t held_until(uint64_t page, uint64_t now_ns, bool waits_count = true);

  size_t pages_held() const { return installed_.size(); }

 private:
  void forget_old(uint64_t now_ns);

  uint64_t hold_ns_, max_hold_ns_;
  std::function<bool(uint32_t)> halted_;
  struct Install {
    uint64_t at_ns;
    uint32_t tid;
  };
  std::unordered_map<uint64_t, Install> installed_;       // pages within max_hold_ns
  std::deque<std::pair<uint64_t, uint64_t>> installs_;    // (time, page), oldest first
  std::unordered_map<uint32_t, uint64_t> last_fault_ns_;  // by thread
  std::unordered_map<uint32_t, uint32_t> waits_;          // by thread: pages waited for
};

}  // namespace shoal

// A split virtqueue (virtio 1.x, section 2.7) as the device side sees it: the descriptor table,
// the driver's available ring and the device's used ring, all in guest RAM. The guest is not
// trusted: every index is checked against the queue size, every descriptor's buffer against
// guest RAM, and every descriptor field is read once (the driver may rewrite it meanwhile). A
// malformed chain is an error; the transport then marks the device as needing a reset.
//
// One thread at a time uses a queue (its device's worker). Not copyable: it holds the position
// in both rings.
#pragma once

#include <cstdint>
#include <vector>

#include "arch/guest_ram.hpp"
#include "shoal/status.hpp"

namespace shoal {

// Where the driver put the queue (QueueDesc/Driver/Device) and how many entries it has.
struct VirtqueueAddresses {
  uint16_t size = 0;
  uint64_t desc = 0;
  uint64_t avail = 0;
  uint64_t used = 0;
};

// One descriptor's buffer, already translated to the VMM's address for it.
struct GuestBuffer {
  uint8_t* host = nullptr;
  uint32_t len = 0;
  bool device_writable = false;
};

// A chain the driver made available: the head's index (what goes back in the used ring) and
// its buffers in order. Reused across pop()s so that the hot path does not allocate.
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<GuestBuffer> buffers;
};

class Virtqueue {
 public:
  // The largest queue shoal offers (QueueNumMax); the spec's limit is 32768.
  static constexpr uint16_t kMaxSize = 256;

  // Checks the layout (a power-of-two size up to kMaxSize, the spec's alignments, each ring
  // inside guest RAM) and starts at index 0 of both rings, as after a reset.
  static Result<Virtqueue> create(const GuestRam& ram, const VirtqueueAddresses& at);
  Virtqueue(Virtqueue&&) noexcept = default;
  Virtqueue& operator=(Virtqueue&&) noexcept = default;
  Virtqueue(const Virtqueue&) = delete;
  Virtqueue& operator=(const Virtqueue&) = delete;

  uint16_t size() const { return size_; }

  // The next available chain into `out`: true, false when the driver has made nothing new
  // available, or an error naming what is wrong with the chain or the ring.
  Result<bool> pop(DescriptorChain& out);
  // Whether the driver has made a chain available that pop() has not taken.
  bool has_available() const;
  // Returns chain `head` to the driver with `written` bytes written into its buffers.
  void push_used(uint16_t head, uint32_t written);
  // Sets or clears VIRTQ_USED_F_NO_NOTIFY: while the device is busy anyway, the driver need
  // not notify it (each notify is a guest exit). After clearing it, the device must look at
  // the ring once more before it sleeps (a full fence is inside).
  void set_notify(bool wanted);
  // False when the driver set VIRTQ_AVAIL_F_NO_INTERRUPT (it polls the used ring).
  bool interrupt_wanted() const;

 private:
  Virtqueue() = default;
  uint16_t avail_idx() const;

  const GuestRam* ram_ = nullptr;
  uint8_t* desc_ = nullptr;
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;
  uint16_t size_ = 0;
  uint16_t next_avail_ = 0;  // free-running, as the rings' idx fields
  uint16_t next_used_ = 0;
};

}  // namespace shoal

// Registers guest RAM with KVM one slot at a time, on first use. Under shadow paging (the
// nested hosts this project runs on) KVM allocates 8+ bytes of metadata per guest page for
// every memslot when it is created: ~0.25 s and 2 GiB of kernel memory for a 1 TiB guest before
// its first instruction. Instead, each 1 GiB slot is created when the guest first accesses it:
// until then the access is an MMIO exit, which lands here (this device covers guest RAM on the
// MMIO bus), creates the slot, and completes the access against the host mapping. From then on
// KVM maps the slot directly. On one host a slot is never created for memory the guest never
// touches (a member of a multi-host pod creates them all: see below).
//
// The region at GPA 0 starts with a 64 MiB boot slot instead (then 1 GiB slots from 1 GiB on):
// it holds what the loader writes, it is created before every vCPU starts, and KVM's per-page
// metadata for a whole 1 GiB slot costs ~0.45 ms of that start here, a 64 MiB one ~0.05 ms.
//
// On first access is only right on one host. A page walk (the CPU's, or KVM's under shadow
// paging) cannot go through the MMIO path either: a walk through a gpa with no slot finds a
// hole, and the guest takes a page fault. On one host the guest writes its page tables
// before it walks them, so the write has created their slot. In a pod the writer may be
// another host's vCPU, and the walker's host never touched that RAM: a Linux CPU moved onto a
// host that had not run it took a page fault on its kernel text there and triple-faulted
// (Pod.APageTableWrittenOnOneHostIsWalkedOnAnother shows the test guest's version). So a
// member of a pod of more than one host creates every slot up front (MachineCoreOptions).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "arch/guest_ram.hpp"
#include "devices/io_bus.hpp"
#include "kvm/kvm.hpp"

namespace shoal {

class RamSlots : public BusDevice {
 public:
  static constexpr uint64_t kSlotBytes = 1ull << 30;
  static constexpr uint64_t kBootSlotBytes = 64ull << 20;

  // `base_gpa` is where this device sits on the MMIO bus (offsets are relative to it).
  RamSlots(Vm& vm, const GuestRam& ram, uint64_t base_gpa, uint32_t first_slot_id);

  // Creates the slots holding what the VMM wrote (GuestRam::written(): the kernel, boot
  // tables): instruction fetches and page walks cannot go through the MMIO path.
  Status register_written();
  Status ensure(uint64_t gpa, uint64_t len);
  Status ensure_all() { return ensure(base_gpa_, bytes_); }

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  uint64_t slots_created() const { return created_count_.load(); }
  // The first guest address of each slot created so far (a pod snapshot records them).
  std::vector<uint64_t> created_gpas() const;
  // One RamSlots per region of guest RAM, each inserted on `mmio` over its region.
  static Result<std::vector<std::shared_ptr<RamSlots>>> insert_all(Vm& vm, const GuestRam& ram,
                                                                   IoBus& mmio);

 private:
  Status create_slot(size_t index);
  // Slot `index` covers [slot_start(index), slot_start(index + 1)) of this region, clipped.
  uint64_t slot_start(size_t index) const;
  size_t slot_index(uint64_t offset) const;
  size_t slot_count() const { return slot_index(bytes_ - 1) + 1; }

  Vm& vm_;
  const GuestRam& ram_;
  uint64_t base_gpa_;
  uint64_t bytes_;
  bool boot_slot_;  // region at GPA 0: slot 0 is the 64 MiB boot slot
  uint32_t first_slot_id_;
  mutable std::mutex mu_;
  std::vector<bool> created_;
  std::atomic<uint64_t> created_count_{0};
};

}  // namespace shoal

// Guest RAM: one anonymous MAP_NORESERVE mapping, laid out around the x86 MMIO hole.
// Nothing is populated up front: a page exists on the host only once something touches it.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "shoal/size.hpp"
#include "shoal/status.hpp"

namespace shoal {

// RAM stops at 3 GiB below 4 GiB; [3 GiB, 4 GiB) holds the IOAPIC, LAPIC and KVM's TSS pages.
inline constexpr uint64_t kMmioHoleStart = 0xC000'0000;
inline constexpr uint64_t kMmioHoleEnd = 0x1'0000'0000;

struct RamRegion {
  uint64_t gpa;
  uint64_t size;
  uint64_t host_offset;  // into the one host mapping
};

class GuestRam {
 public:
  // Reserves `size` bytes of address space for the guest; `phys_bits` bounds the guest's
  // highest physical address.
  static Result<GuestRam> reserve(uint64_t size, unsigned phys_bits);
  // The regions a guest of `size` bytes gets (no allocation), for layout decisions and tests.
  static std::vector<RamRegion> layout(uint64_t size);

  GuestRam(GuestRam&& o) noexcept;
  GuestRam& operator=(GuestRam&& o) noexcept;
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;
  ~GuestRam();

  uint64_t size() const { return size_; }
  uint8_t* base() const { return base_; }
  const std::vector<RamRegion>& regions() const { return regions_; }
  // RAM below 4 GiB ends here (exclusive).
  uint64_t low_end() const { return regions_.front().gpa + regions_.front().size; }

  // Host address of [gpa, gpa+len) if it lies inside one region, else nullptr.
  uint8_t* host(uint64_t gpa, uint64_t len) const;
  // Copies into guest RAM (the VMM's own writes: kernel, boot tables) and records the range.
  Status write(uint64_t gpa, std::span<const uint8_t> bytes);
  // Guest-physical ranges write() has touched, in order: [gpa, gpa + len).
  const std::vector<std::pair<uint64_t, uint64_t>>& written() const { return written_; }

 private:
  GuestRam() = default;
  void release();

  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::vector<RamRegion> regions_;
  std::vector<std::pair<uint64_t, uint64_t>> written_;
};

}  // namespace shoal

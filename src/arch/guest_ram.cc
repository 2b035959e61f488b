#include "arch/guest_ram.hpp"

#include <sys/mman.h>

#include <cstring>
#include <string>
#include <utility>

#include "shoal/size.hpp"

namespace shoal {

std::vector<RamRegion> GuestRam::layout(uint64_t size) {
  std::vector<RamRegion> regions;
  const uint64_t low = size < kMmioHoleStart ? size : kMmioHoleStart;
  regions.push_back({0, low, 0});
  if (size > low) regions.push_back({kMmioHoleEnd, size - low, low});
  return regions;
}

Result<GuestRam> GuestRam::reserve(uint64_t size, unsigned phys_bits) {
  if (size == 0) return Error("guest memory size is 0");
  if (size % kPageSize != 0) return Error("guest memory size is not a multiple of 4 KiB");
  GuestRam ram;
  ram.regions_ = layout(size);
  const RamRegion& last = ram.regions_.back();
  const uint64_t top = last.gpa + last.size;
  if (phys_bits < 64 && top > (uint64_t{1} << phys_bits))
    return Error(format_size(size) + " of guest memory ends at guest physical address " +
                 std::to_string(top) + ", beyond the " + std::to_string(phys_bits) +
                 "-bit physical address space (" + format_size(uint64_t{1} << phys_bits) + ")");
  // MAP_NORESERVE: no swap/commit accounting, so a 1 TiB guest fits a 24 GiB host as long as
  // it touches less than the host has.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) return errno_error("reserve " + format_size(size) + " of guest memory");
  ram.base_ = static_cast<uint8_t*>(p);
  ram.size_ = size;
  // A fork (none today, but helpers may come) must not share or copy guest RAM.
  madvise(p, size, MADV_DONTFORK);
  return ram;
}

GuestRam::GuestRam(GuestRam&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      regions_(std::move(o.regions_)),
      written_(std::move(o.written_)) {}

GuestRam& GuestRam::operator=(GuestRam&& o) noexcept {
  if (this != &o) {
    release();
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    regions_ = std::move(o.regions_);
    written_ = std::move(o.written_);
  }
  return *this;
}

GuestRam::~GuestRam() {
  release();
}

void GuestRam::release() {
  if (base_ != nullptr) munmap(base_, size_);
  base_ = nullptr;
}

uint8_t* GuestRam::host(uint64_t gpa, uint64_t len) const {
  for (const RamRegion& r : regions_)
    if (gpa >= r.gpa && len <= r.size && gpa - r.gpa <= r.size - len)
      return base_ + r.host_offset + (gpa - r.gpa);
  return nullptr;
}

Status GuestRam::write(uint64_t gpa, std::span<const uint8_t> bytes) {
  uint8_t* dst = host(gpa, bytes.size());
  if (dst == nullptr)
    return Error("guest range [" + std::to_string(gpa) + ", +" + std::to_string(bytes.size()) +
                 ") is not in RAM");
  std::memcpy(dst, bytes.data(), bytes.size());
  written_.emplace_back(gpa, bytes.size());
  return {};
}

}  // namespace shoal

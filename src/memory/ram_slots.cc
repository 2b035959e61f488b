#include "memory/ram_slots.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

namespace shoal {

namespace {
const RamRegion* region_at(const GuestRam& ram, uint64_t gpa) {
  for (const RamRegion& r : ram.regions())
    if (gpa >= r.gpa && gpa - r.gpa < r.size) return &r;
  return nullptr;
}
}  // namespace

RamSlots::RamSlots(Vm& vm, const GuestRam& ram, uint64_t base_gpa, uint32_t first_slot_id)
    : vm_(vm), ram_(ram), base_gpa_(base_gpa), first_slot_id_(first_slot_id) {
  const RamRegion* r = region_at(ram, base_gpa);
  bytes_ = r ? r->size - (base_gpa - r->gpa) : 0;
  created_.assign((bytes_ + kSlotBytes - 1) / kSlotBytes, false);
}

Status RamSlots::create_slot(size_t index) {
  if (created_[index]) return {};
  const uint64_t gpa = base_gpa_ + index * kSlotBytes;
  const uint64_t size = std::min(kSlotBytes, bytes_ - index * kSlotBytes);
  SHOAL_TRY(vm_.set_memory_region(first_slot_id_ + static_cast<uint32_t>(index), gpa, size,
                                  ram_.host(gpa, size)),
            "guest RAM slot");
  created_[index] = true;
  ++created_count_;
  return {};
}

Result<std::vector<std::shared_ptr<RamSlots>>> RamSlots::insert_all(Vm& vm, const GuestRam& ram,
                                                                    IoBus& mmio) {
  std::vector<std::shared_ptr<RamSlots>> all;
  uint32_t slot_id = 0;
  for (const RamRegion& r : ram.regions()) {
    auto slots = std::make_shared<RamSlots>(vm, ram, r.gpa, slot_id);
    slot_id += static_cast<uint32_t>((r.size + kSlotBytes - 1) / kSlotBytes);
    SHOAL_TRY(mmio.insert(r.gpa, r.size, slots, "guest RAM"), "");
    all.push_back(std::move(slots));
  }
  return all;
}

Status RamSlots::register_written() {
  for (const auto& [gpa, len] : ram_.written()) SHOAL_TRY(ensure(gpa, len), "");
  return {};
}

Status RamSlots::ensure(uint64_t gpa, uint64_t len) {
  std::lock_guard lock(mu_);
  for (uint64_t a = gpa & ~(kSlotBytes - 1); a < gpa + len; a += kSlotBytes) {
    if (a < base_gpa_ || a - base_gpa_ >= bytes_) continue;
    SHOAL_TRY(create_slot((a - base_gpa_) / kSlotBytes), "");
  }
  return {};
}

void RamSlots::read(uint64_t offset, std::span<uint8_t> data) {
  const uint64_t gpa = base_gpa_ + offset;
  uint8_t* host = ram_.host(gpa, data.size());
  if (auto s = ensure(gpa, data.size()); !s.ok() || host == nullptr) {
    spdlog::error("guest RAM at 0x{:x}: {}", gpa, s.ok() ? "outside RAM" : s.error().message());
    std::memset(data.data(), 0xff, data.size());
    return;
  }
  std::memcpy(data.data(), host, data.size());
}

void RamSlots::write(uint64_t offset, std::span<const uint8_t> data) {
  const uint64_t gpa = base_gpa_ + offset;
  uint8_t* host = ram_.host(gpa, data.size());
  if (auto s = ensure(gpa, data.size()); !s.ok() || host == nullptr) {
    spdlog::error("guest RAM at 0x{:x}: {}", gpa, s.ok() ? "outside RAM" : s.error().message());
    return;
  }
  std::memcpy(host, data.data(), data.size());
}

}  // namespace shoal

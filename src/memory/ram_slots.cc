#include "memory/ram_slots.hpp"

#include <algorithm>
#include <cstring>

#include "shoal/log.hpp"

namespace shoal {

namespace {
const RamRegion* region_at(const GuestRam& ram, uint64_t gpa) {
  for (const RamRegion& r : ram.regions())
    if (gpa >= r.gpa && gpa - r.gpa < r.size) return &r;
  return nullptr;
}
}  // namespace

RamSlots::RamSlots(Vm& vm, const GuestRam& ram, uint64_t base_gpa, uint32_t first_slot_id)
    : vm_(vm),
      ram_(ram),
      base_gpa_(base_gpa),
      boot_slot_(base_gpa == 0),
      first_slot_id_(first_slot_id) {
  const RamRegion* r = region_at(ram, base_gpa);
  bytes_ = r ? r->size - (base_gpa - r->gpa) : 0;
  created_.assign(bytes_ == 0 ? 0 : slot_count(), false);
}

uint64_t RamSlots::slot_start(size_t index) const {
  if (!boot_slot_) return std::min<uint64_t>(index * kSlotBytes, bytes_);
  if (index == 0) return 0;
  return std::min<uint64_t>(index == 1 ? kBootSlotBytes : (index - 1) * kSlotBytes, bytes_);
}

size_t RamSlots::slot_index(uint64_t offset) const {
  if (!boot_slot_) return offset / kSlotBytes;
  if (offset < kBootSlotBytes) return 0;
  return offset < kSlotBytes ? 1 : offset / kSlotBytes + 1;
}

Status RamSlots::create_slot(size_t index) {
  if (created_[index]) return {};
  const uint64_t gpa = base_gpa_ + slot_start(index);
  const uint64_t size = slot_start(index + 1) - slot_start(index);
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
    slot_id += static_cast<uint32_t>(slots->created_.size());
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
  const uint64_t begin = std::max(gpa, base_gpa_);
  const uint64_t end = std::min(gpa + len, base_gpa_ + bytes_);
  if (len == 0 || begin >= end) return {};
  for (size_t i = slot_index(begin - base_gpa_); i <= slot_index(end - 1 - base_gpa_); ++i)
    SHOAL_TRY(create_slot(i), "");
  return {};
}

void RamSlots::read(uint64_t offset, std::span<uint8_t> data) {
  const uint64_t gpa = base_gpa_ + offset;
  uint8_t* host = ram_.host(gpa, data.size());
  if (auto s = ensure(gpa, data.size()); !s.ok() || host == nullptr) {
    log::error("guest RAM at 0x{:x}: {}", gpa, s.ok() ? "outside RAM" : s.error().message());
    std::memset(data.data(), 0xff, data.size());
    return;
  }
  std::memcpy(data.data(), host, data.size());
}

void RamSlots::write(uint64_t offset, std::span<const uint8_t> data) {
  const uint64_t gpa = base_gpa_ + offset;
  uint8_t* host = ram_.host(gpa, data.size());
  if (auto s = ensure(gpa, data.size()); !s.ok() || host == nullptr) {
    log::error("guest RAM at 0x{:x}: {}", gpa, s.ok() ? "outside RAM" : s.error().message());
    return;
  }
  std::memcpy(host, data.data(), data.size());
}

std::vector<uint64_t> RamSlots::created_gpas() const {
  std::lock_guard lock(mu_);
  std::vector<uint64_t> gpas;
  for (size_t i = 0; i < created_.size(); ++i)
    if (created_[i]) gpas.push_back(base_gpa_ + slot_start(i));
  return gpas;
}

}  // namespace shoal

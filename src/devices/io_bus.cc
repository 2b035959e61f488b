#include "devices/io_bus.hpp"

#include <algorithm>
#include <cstring>
#include "shoal/size.hpp"

namespace shoal {

Status IoBus::insert(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device,
                     std::string device_name) {
  if (length == 0 || base + length < base)
    return Error(name_ + " bus: " + device_name + ": bad range at " + format_hex(base));
  for (const Entry& e : entries_)
    if (base < e.base + e.length && e.base < base + length)
      return Error(name_ + " bus: " + device_name + " at [" + format_hex(base) + ", " +
                   format_hex(base + length) + ") overlaps " + e.name);
  auto pos = std::lower_bound(entries_.begin(), entries_.end(), base,
                              [](const Entry& e, uint64_t b) { return e.base < b; });
  entries_.insert(pos, Entry{base, length, std::move(device), std::move(device_name)});
  return {};
}

const IoBus::Entry* IoBus::find(uint64_t addr, uint64_t len) const {
  // The last entry whose base is <= addr is the only candidate.
  auto it = std::upper_bound(entries_.begin(), entries_.end(), addr,
                             [](uint64_t a, const Entry& e) { return a < e.base; });
  if (it == entries_.begin()) return nullptr;
  --it;
  const uint64_t off = addr - it->base;
  if (off >= it->length || len > it->length - off) return nullptr;
  return &*it;
}

bool IoBus::read(uint64_t addr, std::span<uint8_t> data) const {
  const Entry* e = find(addr, data.size());
  if (e == nullptr) {
    std::memset(data.data(), 0xff, data.size());
    return false;
  }
  e->device->read(addr - e->base, data);
  return true;
}

bool IoBus::write(uint64_t addr, std::span<const uint8_t> data) const {
  const Entry* e = find(addr, data.size());
  if (e == nullptr) return false;
  e->device->write(addr - e->base, data);
  return true;
}

const std::string* IoBus::device_name(uint64_t addr) const {
  const Entry* e = find(addr, 1);
  return e == nullptr ? nullptr : &e->name;
}

}  // namespace shoal

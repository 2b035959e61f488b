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

namespace {
constexpr uint32_t kDevicesMagic = 0x56444853;  // "SHDV"
constexpr uint32_t kDevicesVersion = 1;
constexpr size_t kMaxDeviceStateBytes = 64 * 1024;
}  // namespace

std::vector<uint8_t> IoBus::save_state() const {
  WireWriter w;
  w.put(kDevicesMagic).put(kDevicesVersion).put<uint32_t>(static_cast<uint32_t>(entries_.size()));
  for (const Entry& e : entries_) {
    WireWriter one;
    e.device->save_state(one);
    const std::vector<uint8_t> state = one.take();
    w.put<uint64_t>(e.base).put<uint32_t>(static_cast<uint32_t>(state.size()));
    w.put_bytes(state.data(), state.size());
  }
  return w.take();
}

Status IoBus::restore_state(const std::vector<uint8_t>& bytes) {
  WireReader r(bytes);
  uint32_t magic = 0, version = 0, count = 0;
  if (!r.get(magic) || magic != kDevicesMagic) return Error(name_ + " state: not a device state");
  if (!r.get(version) || version != kDevicesVersion)
    return Error(name_ + " state: version " + std::to_string(version) + ", this build reads " +
                 std::to_string(kDevicesVersion));
  if (!r.get(count) || count != entries_.size())
    return Error(name_ + " state: " + std::to_string(count) + " devices, this machine has " +
                 std::to_string(entries_.size()));
  for (Entry& e : entries_) {
    uint64_t base = 0;
    uint32_t size = 0;
    if (!r.get(base) || !r.get(size)) return Error(name_ + " state: truncated");
    if (base != e.base)
      return Error(name_ + " state: a device at " + std::to_string(base) + " where " + e.name +
                   " is");
    if (size > kMaxDeviceStateBytes)
      return Error(name_ + " state: " + e.name + ": " + std::to_string(size) + " bytes");
    std::vector<uint8_t> state(size);
    if (!r.get_bytes(state.data(), size)) return Error(name_ + " state: " + e.name + ": truncated");
    WireReader one(state);
    SHOAL_TRY(e.device->restore_state(one), name_ + " state: " + e.name);
    if (!one.rest().empty()) return Error(name_ + " state: " + e.name + ": trailing bytes");
  }
  if (!r.rest().empty()) return Error(name_ + " state: trailing bytes");
  return {};
}

}  // namespace shoal

// Address-range dispatch for port I/O and MMIO exits. Built before the vCPUs start and
// read-only afterwards, so lookups take no lock; each device serializes itself.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "shoal/status.hpp"
#include "shoal/wire_bytes.hpp"

namespace shoal {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the base the device was inserted at.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
  // The save/restore contract: a device with guest-visible state writes it here, and reads back
  // exactly what it wrote (checking every field); called with the vCPUs paused. A device without
  // state (its registers are constants, or it only forwards) keeps these defaults.
  virtual void save_state(WireWriter& out) const { (void)out; }
  virtual Status restore_state(WireReader& in) {
    (void)in;
    return {};
  }
};

class IoBus {
 public:
  explicit IoBus(std::string name) : name_(std::move(name)) {}

  // Fails on an empty range or one that overlaps a device already on the bus.
  Status insert(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device,
                std::string device_name);

  // False when no device covers [addr, addr+len); a read then returns all-ones, as an
  // open bus does on a PC.
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

  // Name of the device at `addr`, or nullptr.
  const std::string* device_name(uint64_t addr) const;

  // Every device's state, by name (and base address), and back into the same devices.
  std::vector<uint8_t> save_state() const;
  Status restore_state(const std::vector<uint8_t>& bytes);

 private:
  struct Entry {
    uint64_t base;
    uint64_t length;
    std::shared_ptr<BusDevice> device;
    std::string name;
  };
  const Entry* find(uint64_t addr, uint64_t len) const;

  std::string name_;
  std::vector<Entry> entries_;  // sorted by base, non-overlapping
};

}  // namespace shoal

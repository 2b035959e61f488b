// A guest driver for unit tests of a virtio device behind the virtio-mmio transport, without
// KVM: register reads and writes, and split virtqueues in (unpopulated, MAP_NORESERVE) guest
// RAM, one buffer per chain. Notifications go through the QueueNotify register.
//
// Layout: queue q's rings at 0x10000 + q * 0x4000 (desc, +0x1000 avail, +0x2000 used), kSize
// entries; buffer i of queue q at 0x100000 + q * 0x20000 + i * 0x2000 (8 KiB each).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "devices/virtio_mmio.hpp"

namespace shoal::test {

class VirtioTestDriver {
 public:
  static constexpr uint16_t kSize = 16;
  static uint64_t ring(uint16_t q, int part) { return 0x10000 + q * 0x4000ull + part * 0x1000ull; }
  static uint64_t buffer(uint16_t q, uint16_t i) {
    return 0x100000 + q * 0x20000ull + i * 0x2000ull;
  }

  // Puts `device` on a transport over 4 MiB of fresh guest RAM.
  explicit VirtioTestDriver(std::unique_ptr<VirtioDevice> device) {
    auto r = GuestRam::reserve(4 << 20, 40);
    EXPECT_TRUE(r.ok());
    ram_.emplace(std::move(*r));
    auto t = VirtioMmio::create(nullptr, *ram_, 0xfeb00000, 16, std::move(device));
    EXPECT_TRUE(t.ok());
    transport_ = *t;
  }
  GuestRam& ram() { return *ram_; }
  VirtioMmio& transport() { return *transport_; }
  uint8_t* host(uint64_t gpa, uint64_t len) { return ram_->host(gpa, len); }

  uint32_t reg(uint64_t off) {
    uint32_t v = 0;
    transport_->read(off, {reinterpret_cast<uint8_t*>(&v), 4});
    return v;
  }
  void set(uint64_t off, uint32_t v) {
    transport_->write(off, {reinterpret_cast<uint8_t*>(&v), 4});
  }
  // The spec's initialization sequence: accepts `features` (the transport's VERSION_1 is
  // added) and sets up `queues` queues.
  void start(uint64_t features, uint16_t queues) {
    features |= kVirtioFVersion1;
    set(0x70, 0);
    set(0x70, 3);
    for (uint32_t sel = 0; sel < 2; ++sel) {
      set(0x24, sel);
      set(0x20, static_cast<uint32_t>(features >> (32 * sel)));
    }
    set(0x70, 3 | 8);
    for (uint16_t q = 0; q < queues; ++q) {
      set(0x30, q);
      set(0x38, kSize);
      set(0x80, static_cast<uint32_t>(ring(q, 0)));
      set(0x90, static_cast<uint32_t>(ring(q, 1)));
      set(0xa0, static_cast<uint32_t>(ring(q, 2)));
      set(0x44, 1);
    }
    set(0x70, 3 | 8 | 4);
    posted_.assign(queues, 0);
  }
  // The config space byte at `offset`.
  uint8_t config(uint64_t offset) {
    uint8_t b = 0;
    transport_->read(0x100 + offset, {&b, 1});
    return b;
  }
  // Makes buffer `i` of queue `q` (`len` bytes, device-writable or not) available and notifies.
  void post(uint16_t q, uint16_t i, uint32_t len, bool device_writable) {
    uint8_t* d = host(ring(q, 0) + 16 * i, 16);
    const uint64_t addr = buffer(q, i);
    const uint16_t flags = device_writable ? 2 : 0, next = 0;
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    uint8_t* avail = host(ring(q, 1), 4 + 2 * kSize);
    std::memcpy(avail + 4 + 2 * (posted_[q] % kSize), &i, 2);
    ++posted_[q];
    __atomic_store_n(reinterpret_cast<uint16_t*>(avail + 2), posted_[q], __ATOMIC_RELEASE);
    set(0x50, q);
  }
  // How many entries queue q's used ring has now.
  uint16_t used_count(uint16_t q) {
    return __atomic_load_n(reinterpret_cast<const uint16_t*>(host(ring(q, 2) + 2, 2)),
                           __ATOMIC_ACQUIRE);
  }
  // Waits (10 s at most) until queue q's used ring has `count` entries; the last one's len.
  std::optional<uint32_t> used(uint16_t q, uint16_t count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (used_count(q) < count)
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    uint32_t len;
    std::memcpy(&len, host(ring(q, 2) + 4 + 8 * ((count - 1) % kSize) + 4, 4), 4);
    return len;
  }

 private:
  std::optional<GuestRam> ram_;
  std::shared_ptr<VirtioMmio> transport_;
  std::vector<uint16_t> posted_;
};

}  // namespace shoal::test

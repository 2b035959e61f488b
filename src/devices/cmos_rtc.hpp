// The PC's MC146818 CMOS real-time clock at ports 0x70 (index) and 0x71 (data): the host's
// wall clock in UTC, in BCD or binary and 12- or 24-hour form as register B asks, plus the
// 128 bytes of CMOS memory. Without it Linux's rtc_cmos driver spends seconds probing an
// absent chip and the guest starts in 1970. No interrupts (alarm, periodic, update).
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>

#include "devices/io_bus.hpp"

namespace shoal {

class CmosRtc : public BusDevice {
 public:
  using Clock = std::function<time_t()>;  // seconds since the epoch, UTC
  explicit CmosRtc(Clock clock = nullptr);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  // The index register, the NVRAM and the guest's offset from the host clock (the time itself
  // is the host's, plus that offset, wherever the guest runs).
  void save_state(WireWriter& out) const override;
  Status restore_state(WireReader& in) override;

  // Register numbers.
  static constexpr uint8_t kSeconds = 0x00, kMinutes = 0x02, kHours = 0x04, kWeekday = 0x06,
                           kDay = 0x07, kMonth = 0x08, kYear = 0x09, kRegA = 0x0a, kRegB = 0x0b,
                           kRegC = 0x0c, kRegD = 0x0d, kCentury = 0x32;
  static constexpr uint8_t kRegBSet = 0x80, kRegBBinary = 0x04, kRegB24Hour = 0x02;
  static constexpr uint8_t kRegDValid = 0x80;  // "the battery is good"

 private:
  uint8_t read_register(uint8_t reg);
  void write_register(uint8_t reg, uint8_t value);
  uint8_t encode(int value) const;
  int decode(uint8_t value) const;
  uint8_t encode_hours(int hours) const;
  int decode_hours(uint8_t value) const;
  time_t now() const { return clock_() + offset_; }
  void fill_time(time_t t);
  time_t time_from_registers() const;

  mutable std::mutex mu_;
  Clock clock_;
  time_t offset_ = 0;  // what the guest set, relative to the host's clock
  uint8_t index_ = 0;
  uint8_t cmos_[128] = {};
};

}  // namespace shoal

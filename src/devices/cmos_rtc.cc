#include "devices/cmos_rtc.hpp"

#include <cstring>

namespace shoal {

namespace {
constexpr uint8_t kIndexMask = 0x7f;    // bit 7 of the index port gates NMIs on a PC
constexpr uint8_t kPmBit = 0x80;        // in 12-hour mode, the hours register's PM flag
constexpr uint8_t kRegADivider = 0x26;  // 32.768 kHz time base, 1024 Hz rate (the default)
}  // namespace

CmosRtc::CmosRtc(Clock clock) : clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::time(nullptr); };
  cmos_[kRegA] = kRegADivider;
  cmos_[kRegB] = kRegB24Hour;  // BCD, 24-hour: what a PC BIOS leaves
  cmos_[kRegD] = kRegDValid;
}

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (data.empty()) return;
  std::lock_guard lock(mu_);
  data[0] = offset == 0 ? index_ : read_register(index_);
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mu_);
  if (offset == 0)
    index_ = data[0] & kIndexMask;
  else
    write_register(index_, data[0]);
}

uint8_t CmosRtc::encode(int value) const {
  if (cmos_[kRegB] & kRegBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>((value / 10) << 4 | (value % 10));
}

int CmosRtc::decode(uint8_t value) const {
  if (cmos_[kRegB] & kRegBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

uint8_t CmosRtc::encode_hours(int hours) const {
  if (cmos_[kRegB] & kRegB24Hour) return encode(hours);
  const int h12 = hours % 12 == 0 ? 12 : hours % 12;
  return static_cast<uint8_t>(encode(h12) | (hours >= 12 ? kPmBit : 0));
}

int CmosRtc::decode_hours(uint8_t value) const {
  if (cmos_[kRegB] & kRegB24Hour) return decode(value);
  const int h12 = decode(value & static_cast<uint8_t>(~kPmBit));
  return h12 % 12 + ((value & kPmBit) ? 12 : 0);
}

void CmosRtc::fill_time(time_t t) {
  tm utc{};
  gmtime_r(&t, &utc);
  cmos_[kSeconds] = encode(utc.tm_sec);
  cmos_[kMinutes] = encode(utc.tm_min);
  cmos_[kHours] = encode_hours(utc.tm_hour);
  cmos_[kWeekday] = encode(utc.tm_wday + 1);
  cmos_[kDay] = encode(utc.tm_mday);
  cmos_[kMonth] = encode(utc.tm_mon + 1);
  cmos_[kYear] = encode((utc.tm_year + 1900) % 100);
  cmos_[kCentury] = encode((utc.tm_year + 1900) / 100);
}

time_t CmosRtc::time_from_registers() const {
  tm utc{};
  utc.tm_sec = decode(cmos_[kSeconds]);
  utc.tm_min = decode(cmos_[kMinutes]);
  utc.tm_hour = decode_hours(cmos_[kHours]);
  utc.tm_mday = decode(cmos_[kDay]);
  utc.tm_mon = decode(cmos_[kMonth]) - 1;
  utc.tm_year = decode(cmos_[kCentury]) * 100 + decode(cmos_[kYear]) - 1900;
  return timegm(&utc);
}

uint8_t CmosRtc::read_register(uint8_t reg) {
  switch (reg) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kWeekday:
    case kDay:
    case kMonth:
    case kYear:
    case kCentury:
      // While the guest holds SET it reads back what it wrote; otherwise the clock runs.
      if (!(cmos_[kRegB] & kRegBSet)) fill_time(now());
      return cmos_[reg];
    case kRegA:
      return cmos_[kRegA];  // update-in-progress (bit 7) is never set: updates are instant
    case kRegC: {
      const uint8_t v = cmos_[kRegC];  // interrupt flags, cleared by reading
      cmos_[kRegC] = 0;
      return v;
    }
    default:
      return cmos_[reg];
  }
}

void CmosRtc::write_register(uint8_t reg, uint8_t value) {
  switch (reg) {
    case kRegB: {
      const bool was_set = cmos_[kRegB] & kRegBSet;
      if (!was_set) fill_time(now());
      const time_t t = time_from_registers();  // decoded in the old format
      cmos_[kRegB] = value;
      if (value & kRegBSet)
        fill_time(t);  // frozen while the guest sets the clock, shown in the new format
      else if (was_set)
        offset_ = t - clock_();  // the guest set the clock
      return;
    }
    case kSeconds:
    case kMinutes:
    case kHours:
    case kDay:
    case kMonth:
    case kYear:
    case kCentury:
      if (cmos_[kRegB] & kRegBSet) {
        cmos_[reg] = value;
      } else {  // a running clock changed one field at a time
        fill_time(now());
        cmos_[reg] = value;
        offset_ = time_from_registers() - clock_();
      }
      return;
    case kRegC:
    case kRegD:
      return;  // read-only
    case kRegA:
      cmos_[kRegA] = value & 0x7f;
      return;
    default:
      cmos_[reg] = value;
  }
}

void CmosRtc::save_state(WireWriter& out) const {
  std::lock_guard lock(mu_);
  out.put<int64_t>(offset_).put(index_).put_bytes(cmos_, sizeof cmos_);
}

Status CmosRtc::restore_state(WireReader& in) {
  int64_t offset = 0;
  uint8_t index = 0;
  uint8_t cmos[sizeof cmos_];
  if (!in.get(offset) || !in.get(index) || !in.get_bytes(cmos, sizeof cmos))
    return Error("registers: truncated");
  if (index >= sizeof cmos_) return Error("index " + std::to_string(index) + " out of range");
  std::lock_guard lock(mu_);
  offset_ = static_cast<time_t>(offset);
  index_ = index;
  std::memcpy(cmos_, cmos, sizeof cmos_);
  return {};
}

}  // namespace shoal

// The ACPI power-management block and the CMOS clock, driven as Linux drives them.
#include <gtest/gtest.h>

#include "arch/platform_ports.hpp"
#include "devices/acpi_pm.hpp"
#include "devices/cmos_rtc.hpp"
#include "shoal/clock.hpp"

namespace shoal {
namespace {

uint8_t in(BusDevice& d, uint64_t offset) {
  uint8_t v = 0;
  d.read(offset, std::span<uint8_t>(&v, 1));
  return v;
}

void out(BusDevice& d, uint64_t offset, uint8_t v) {
  d.write(offset, std::span<const uint8_t>(&v, 1));
}

TEST(AcpiPm, S5WithSleepEnablePowersOffAndTheResetValueResets) {
  int off = 0, reset = 0;
  AcpiPm pm([&] { ++off; }, [&] { ++reset; });
  out(pm, 1, AcpiPm::kWakeStatus);  // Linux clears wake status first
  out(pm, 0, 5 << 2);               // SLP_TYP without SLP_EN: nothing yet
  EXPECT_EQ(off, 0);
  out(pm, 0, (3 << 2) | AcpiPm::kSleepEnable);  // S3 is not offered
  EXPECT_EQ(off, 0);
  out(pm, 0, (5 << 2) | AcpiPm::kSleepEnable);  // what acpi_hw_extended_sleep(S5) writes
  EXPECT_EQ(off, 1);
  out(pm, 2, 0x06);
  EXPECT_EQ(reset, 0);
  out(pm, 2, platform::kAcpiResetValue);
  EXPECT_EQ(reset, 1);
  EXPECT_EQ(in(pm, 1) & AcpiPm::kWakeStatus, AcpiPm::kWakeStatus);
}

TEST(AcpiPmTimer, CountsAt3579545HzAndWrapsAt32Bits) {
  EXPECT_EQ(AcpiPmTimer::count_at(0), 0u);
  EXPECT_EQ(AcpiPmTimer::count_at(1'000'000'000), 3'579'545u);
  EXPECT_EQ(AcpiPmTimer::count_at(10'000'000), 35'795u);  // 10 ms
  // 2^32 ticks take 1199.86 s; past that it wraps, and past 85 minutes no 64-bit overflow.
  const uint64_t hour = 3600ull * 1'000'000'000;
  EXPECT_EQ(AcpiPmTimer::count_at(hour), static_cast<uint32_t>(3600ull * 3'579'545));
  EXPECT_EQ(AcpiPmTimer::count_at(100 * hour), static_cast<uint32_t>(360'000ull * 3'579'545));
  // Reads: a dword, or its bytes one by one (little-endian); the count moves forward.
  AcpiPmTimer t;
  uint32_t a = 0, b = 0;
  t.read(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&a), 4));
  t.read(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&b), 4));
  EXPECT_LT(b - a, 3'579'545u);  // well under a second apart
  const auto top = [](uint64_t ns) {
    return static_cast<uint8_t>(AcpiPmTimer::count_at(ns) >> 24);
  };
  const uint8_t before = top(monotonic_ns()), read = in(t, 3), after = top(monotonic_ns());
  EXPECT_TRUE(read == before || read == after) << int{read};
}

uint8_t cmos(CmosRtc& rtc, uint8_t reg) {
  out(rtc, 0, reg);
  return in(rtc, 1);
}

void set_cmos(CmosRtc& rtc, uint8_t reg, uint8_t v) {
  out(rtc, 0, reg);
  out(rtc, 1, v);
}

// 2026-11-23 13:45:30 UTC, a Monday (weekday 2: Sunday is 1).
constexpr time_t kNow = 1795441530;

TEST(CmosRtc, ReadsTheHostClockInBcd24Hour) {
  CmosRtc rtc([] { return kNow; });
  EXPECT_EQ(cmos(rtc, CmosRtc::kSeconds), 0x30);
  EXPECT_EQ(cmos(rtc, CmosRtc::kMinutes), 0x45);
  EXPECT_EQ(cmos(rtc, CmosRtc::kHours), 0x13);
  EXPECT_EQ(cmos(rtc, CmosRtc::kDay), 0x23);
  EXPECT_EQ(cmos(rtc, CmosRtc::kMonth), 0x11);
  EXPECT_EQ(cmos(rtc, CmosRtc::kYear), 0x26);
  EXPECT_EQ(cmos(rtc, CmosRtc::kCentury), 0x20);
  EXPECT_EQ(cmos(rtc, CmosRtc::kWeekday), 2);
  EXPECT_EQ(cmos(rtc, CmosRtc::kRegA) & 0x80, 0) << "update in progress never set";
  EXPECT_EQ(cmos(rtc, CmosRtc::kRegD), CmosRtc::kRegDValid);
}

TEST(CmosRtc, BinaryAnd12HourFormatsFollowRegisterB) {
  CmosRtc rtc([] { return kNow; });
  set_cmos(rtc, CmosRtc::kRegB, CmosRtc::kRegBBinary);  // binary, 12-hour
  EXPECT_EQ(cmos(rtc, CmosRtc::kMinutes), 45);
  EXPECT_EQ(cmos(rtc, CmosRtc::kHours), 0x80 | 1) << "1 PM";
}

TEST(CmosRtc, TheGuestSetsTheClockUnderTheSetBit) {
  time_t host = kNow;
  CmosRtc rtc([&] { return host; });
  set_cmos(rtc, CmosRtc::kRegB, CmosRtc::kRegBSet | CmosRtc::kRegB24Hour);
  set_cmos(rtc, CmosRtc::kHours, 0x08);
  set_cmos(rtc, CmosRtc::kYear, 0x30);
  host += 100;  // frozen while SET is held
  EXPECT_EQ(cmos(rtc, CmosRtc::kSeconds), 0x30);
  set_cmos(rtc, CmosRtc::kRegB, CmosRtc::kRegB24Hour);
  EXPECT_EQ(cmos(rtc, CmosRtc::kHours), 0x08);
  EXPECT_EQ(cmos(rtc, CmosRtc::kYear), 0x30);
  host += 60;  // and running again afterwards
  EXPECT_EQ(cmos(rtc, CmosRtc::kMinutes), 0x46);
}

TEST(CmosRtc, MemoryBytesKeepWhatWasWritten) {
  CmosRtc rtc;
  set_cmos(rtc, 0x40, 0xab);
  EXPECT_EQ(cmos(rtc, 0x40), 0xab);
  out(rtc, 0, 0x80 | 0x40);  // bit 7 of the index is the NMI mask, not part of the index
  EXPECT_EQ(in(rtc, 1), 0xab);
}

}  // namespace
}  // namespace shoal

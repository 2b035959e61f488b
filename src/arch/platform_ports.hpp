// The PC platform's fixed port numbers and interrupt lines, shared by the devices that answer
// on them and the ACPI tables that describe them to the guest.
#pragma once

#include <cstdint>

namespace shoal::platform {

inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint8_t kCom1Length = 8;
inline constexpr uint32_t kCom1Irq = 4;  // ISA IRQ 4 = IOAPIC pin 4 (no override in the MADT)

inline constexpr uint16_t kRtcPort = 0x70;  // CMOS index; data at 0x71
inline constexpr uint8_t kRtcLength = 2;

// ACPI hardware-reduced power management (FADT sleep control/status and reset registers);
// the same block Cloud Hypervisor uses, one byte per register.
inline constexpr uint16_t kAcpiPmPort = 0x600;
inline constexpr uint16_t kAcpiSleepControl = kAcpiPmPort;
inline constexpr uint16_t kAcpiSleepStatus = kAcpiPmPort + 1;
inline constexpr uint16_t kAcpiReset = kAcpiPmPort + 2;
inline constexpr uint8_t kAcpiPmLength = 3;
inline constexpr uint8_t kAcpiResetValue = 0x01;
inline constexpr uint8_t kAcpiS5SleepType = 5;  // the _S5_ package's SLP_TYP
// The ACPI PM timer (FADT X_PM_TMR_BLK): a free-running 32-bit count at 3.579545 MHz, where
// QEMU's q35 has it. Linux calibrates the TSC against it when the PIT loop cannot (kvmclock
// hidden, or an emulated machine too slow for the PIT's window).
inline constexpr uint16_t kAcpiPmTimerPort = 0x608;
inline constexpr uint8_t kAcpiPmTimerLength = 4;
inline constexpr uint64_t kAcpiPmTimerHz = 3'579'545;

// virtio-mmio transports (version 2): where QEMU's microvm puts them, 512 bytes each, each
// with its own IOAPIC pin from 16 (the pins above the ISA range). The DSDT describes each one
// (_HID LNRO0005), so Linux finds them without a kernel parameter; the test guest scans them.
inline constexpr uint64_t kVirtioMmioBase = 0xfeb0'0000;
inline constexpr uint64_t kVirtioMmioStride = 0x200;
inline constexpr uint32_t kVirtioMmioSlots = 8;
inline constexpr uint32_t kVirtioMmioFirstGsi = 16;

}  // namespace shoal::platform

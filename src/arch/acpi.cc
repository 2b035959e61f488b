#include "arch/acpi.hpp"

#include <cstring>
#include <string>

#include "arch/aml.hpp"
#include "arch/boot_layout.hpp"
#include "arch/mptable.hpp"
#include "arch/platform_ports.hpp"

namespace shoal {

namespace {

constexpr size_t kHeaderSize = 36;
constexpr size_t kFadtSize = 276;  // revision 6
constexpr uint32_t kFadtHwReducedAcpi = 1u << 20, kFadtResetRegSupported = 1u << 10;
constexpr size_t kFadtResetReg = 116, kFadtResetValue = 128, kFadtSleepControl = 244,
                 kFadtSleepStatus = 256;
constexpr size_t kFadtPmTimerBlock = 76, kFadtPmTimerLength = 91, kFadtXPmTimerBlock = 208;
constexpr uint32_t kFadtTimerValueExtended = 1u << 8;  // the PM timer counts 32 bits, not 24
constexpr uint16_t kIapcVgaNotPresent = 1u << 2, kIapcMsiNotPresent = 1u << 3;
constexpr uint32_t kMadtPcAtCompat = 1;  // the 8259 PICs exist (KVM's in-kernel irqchip)
constexpr uint8_t kMadtLocalApic = 0, kMadtIoApic = 1;

template <class T>
void put(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(&b[at], &v, sizeof v);
}

// A table of `size` bytes with its standard header filled in (checksum left to finish()).
std::vector<uint8_t> table(const char* signature, size_t size, uint8_t revision) {
  std::vector<uint8_t> t(size, 0);
  std::memcpy(&t[0], signature, 4);
  put<uint32_t>(t, 4, static_cast<uint32_t>(size));
  t[8] = revision;
  std::memcpy(&t[10], "SHOAL ", 6);
  std::memcpy(&t[16], "SHOALVM ", 8);
  put<uint32_t>(t, 24, 1);
  std::memcpy(&t[28], "SHOL", 4);
  put<uint32_t>(t, 32, 1);
  return t;
}

// A Generic Address Structure naming one byte-wide I/O port.
void put_io_port_gas(std::vector<uint8_t>& b, size_t at, uint16_t port, uint8_t bytes = 1) {
  b[at] = 1;                                    // system I/O space
  b[at + 1] = static_cast<uint8_t>(8 * bytes);  // register bit width
  b[at + 2] = 0;                                // bit offset
  b[at + 3] = bytes == 4 ? 3 : 1;               // dword or byte access
  put<uint64_t>(b, at + 4, port);
}

// The DSDT's AML: the legacy devices Linux cannot find any other way on a hardware-reduced
// platform (with no legacy PIC it maps no ISA interrupt by itself, so the UART gets IRQ 4
// only through this _CRS), and \_S5_, without which it never uses the sleep register to
// power off. Each virtio-mmio transport is a device of its own: its registers and its IOAPIC pin.
std::vector<uint8_t> dsdt_aml(uint32_t virtio_mmio) {
  using namespace aml;
  const Bytes com1 = device(
      "COM1",
      concat({name("_HID", eisa_id("PNP0501")), name("_UID", integer(1)),
              name("_CRS", resource_template({io_port(platform::kCom1Port, platform::kCom1Length),
                                              interrupt(platform::kCom1Irq)}))}));
  // The CMOS clock raises no interrupts here (no alarms or periodic ticks), so no IRQ 8.
  const Bytes rtc = device(
      "RTC",
      concat(
          {name("_HID", eisa_id("PNP0B00")),
           name("_CRS", resource_template({io_port(platform::kRtcPort, platform::kRtcLength)}))}));
  std::vector<Bytes> devices{com1, rtc};
  for (uint32_t n = 0; n < virtio_mmio; ++n) {
    const char hex[] = "0123456789ABCDEF";
    const std::string path = std::string("VR") + hex[n >> 4 & 15] + hex[n & 15];
    devices.push_back(device(
        path,
        concat({name("_HID", aml::string("LNRO0005")), name("_UID", integer(n)),
                name("_CRS", resource_template({memory32_fixed(static_cast<uint32_t>(
                                                                   platform::kVirtioMmioBase +
                                                                   n * platform::kVirtioMmioStride),
                                                               platform::kVirtioMmioStride),
                                                interrupt(platform::kVirtioMmioFirstGsi + n)}))})));
  }
  return concat({scope("\\_SB", concat(devices)),
                 name("_S5", package({integer(platform::kAcpiS5SleepType), integer(0)}))});
}

void finish(std::vector<uint8_t>& t) {
  put<uint32_t>(t, 4, static_cast<uint32_t>(t.size()));
  t[9] = 0;
  t[9] = acpi_checksum(t.data(), t.size());
}

}  // namespace

uint8_t acpi_checksum(const uint8_t* bytes, size_t len) {
  uint8_t sum = 0;
  for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + bytes[i]);
  return static_cast<uint8_t>(-sum);
}

Result<AcpiTables> build_acpi_tables(uint64_t addr, int vcpus, uint32_t virtio_mmio) {
  if (vcpus < 1 || vcpus > kMpTableMaxVcpus)
    return Error("ACPI MADT: " + std::to_string(vcpus) + " vCPUs (1.." +
                 std::to_string(kMpTableMaxVcpus) + " supported)");
  // Layout: RSDP (36 bytes, padded to 64), XSDT, FADT, DSDT, MADT, each 16-byte aligned.
  const uint64_t xsdt_addr = addr + 64;
  std::vector<uint8_t> xsdt = table("XSDT", kHeaderSize + 2 * 8, 1);
  const uint64_t fadt_addr = (xsdt_addr + xsdt.size() + 15) & ~uint64_t{15};
  std::vector<uint8_t> fadt = table("FACP", kFadtSize, 6);
  const uint64_t dsdt_addr = (fadt_addr + fadt.size() + 15) & ~uint64_t{15};
  std::vector<uint8_t> dsdt = table("DSDT", kHeaderSize, 2);
  if (virtio_mmio > platform::kVirtioMmioSlots)
    return Error("ACPI: " + std::to_string(virtio_mmio) + " virtio-mmio devices, at most " +
                 std::to_string(platform::kVirtioMmioSlots));
  const std::vector<uint8_t> aml = dsdt_aml(virtio_mmio);
  dsdt.insert(dsdt.end(), aml.begin(), aml.end());
  const uint64_t madt_addr = (dsdt_addr + dsdt.size() + 15) & ~uint64_t{15};

  put<uint32_t>(fadt, 40, static_cast<uint32_t>(dsdt_addr));
  put<uint16_t>(fadt, 109, kIapcVgaNotPresent | kIapcMsiNotPresent);
  put<uint32_t>(fadt, 112, kFadtHwReducedAcpi | kFadtResetRegSupported | kFadtTimerValueExtended);
  // Linux reads the PM timer's port from the FADT whatever the hardware-reduced flag says.
  put<uint32_t>(fadt, kFadtPmTimerBlock, platform::kAcpiPmTimerPort);
  fadt[kFadtPmTimerLength] = platform::kAcpiPmTimerLength;
  put_io_port_gas(fadt, kFadtXPmTimerBlock, platform::kAcpiPmTimerPort, 4);
  put_io_port_gas(fadt, kFadtResetReg, platform::kAcpiReset);
  fadt[kFadtResetValue] = platform::kAcpiResetValue;
  put_io_port_gas(fadt, kFadtSleepControl, platform::kAcpiSleepControl);
  put_io_port_gas(fadt, kFadtSleepStatus, platform::kAcpiSleepStatus);
  fadt[131] = 3;  // FADT minor version (6.3)
  put<uint64_t>(fadt, 140, dsdt_addr);
  std::memcpy(&fadt[268], "SHOALKVM", 8);  // hypervisor vendor identity
  finish(fadt);
  finish(dsdt);

  std::vector<uint8_t> madt = table("APIC", kHeaderSize + 8, 5);
  put<uint32_t>(madt, 36, static_cast<uint32_t>(boot::kLapicAddr));
  put<uint32_t>(madt, 40, kMadtPcAtCompat);
  for (int cpu = 0; cpu < vcpus; ++cpu) {
    const uint8_t entry[8] = {kMadtLocalApic,
                              8,
                              static_cast<uint8_t>(cpu),
                              static_cast<uint8_t>(cpu),
                              1,
                              0,
                              0,
                              0};  // enabled
    madt.insert(madt.end(), entry, entry + 8);
  }
  uint8_t ioapic[12] = {kMadtIoApic, 12, static_cast<uint8_t>(vcpus), 0};
  const uint32_t ioapic_addr = static_cast<uint32_t>(boot::kIoapicAddr);
  std::memcpy(&ioapic[4], &ioapic_addr, 4);  // GSI base 0 follows as zeros
  madt.insert(madt.end(), ioapic, ioapic + 12);
  finish(madt);

  put<uint64_t>(xsdt, 36, fadt_addr);
  put<uint64_t>(xsdt, 44, madt_addr);
  finish(xsdt);

  std::vector<uint8_t> rsdp(36, 0);
  std::memcpy(&rsdp[0], "RSD PTR ", 8);
  std::memcpy(&rsdp[9], "SHOAL ", 6);
  rsdp[15] = 2;  // ACPI 2.0+: use the XSDT
  put<uint32_t>(rsdp, 20, 36);
  put<uint64_t>(rsdp, 24, xsdt_addr);
  rsdp[8] = acpi_checksum(rsdp.data(), 20);
  rsdp[32] = acpi_checksum(rsdp.data(), 36);

  AcpiTables out{addr, std::vector<uint8_t>(madt_addr - addr + madt.size(), 0)};
  auto place = [&](uint64_t at, const std::vector<uint8_t>& t) {
    std::memcpy(&out.bytes[at - addr], t.data(), t.size());
  };
  place(addr, rsdp);
  place(xsdt_addr, xsdt);
  place(fadt_addr, fadt);
  place(dsdt_addr, dsdt);
  place(madt_addr, madt);
  return out;
}

}  // namespace shoal

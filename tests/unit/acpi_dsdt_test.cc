// The DSDT's AML and the FADT's power-management registers: encodings checked byte by byte,
// and the whole DSDT disassembled by ACPICA's iasl (when installed) to prove it parses.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "arch/acpi.hpp"
#include "arch/aml.hpp"
#include "arch/boot_layout.hpp"
#include "arch/kernel_loader.hpp"
#include "arch/platform_ports.hpp"

namespace shoal {
namespace {

using aml::Bytes;

TEST(Aml, PkgLengthUsesOneByteUpTo63AndMoreAfter) {
  EXPECT_EQ(aml::pkg_length(0), Bytes({0x01}));
  EXPECT_EQ(aml::pkg_length(62), Bytes({0x3f}));
  // 63 + 2 length bytes = 65 = 0x41: low nibble 1 in the lead byte, 0x04 after it.
  EXPECT_EQ(aml::pkg_length(63), Bytes({0x41, 0x04}));
  EXPECT_EQ(aml::pkg_length(4093), Bytes({0x4f, 0xff}));
  EXPECT_EQ(aml::pkg_length(4094), Bytes({0x81, 0x00, 0x01}));  // 4097 = 0x1001
}

TEST(Aml, IntegersTakeTheSmallestEncoding) {
  EXPECT_EQ(aml::integer(0), Bytes({0x00}));
  EXPECT_EQ(aml::integer(1), Bytes({0x01}));
  EXPECT_EQ(aml::integer(5), Bytes({0x0a, 0x05}));
  EXPECT_EQ(aml::integer(0x3f8), Bytes({0x0b, 0xf8, 0x03}));
  EXPECT_EQ(aml::integer(0x12345678), Bytes({0x0c, 0x78, 0x56, 0x34, 0x12}));
}

TEST(Aml, EisaIdMatchesWhatAslCompilersEmit) {
  EXPECT_EQ(aml::eisa_id("PNP0501"), Bytes({0x0c, 0x41, 0xd0, 0x05, 0x01}));
  EXPECT_EQ(aml::eisa_id("PNP0B00"), Bytes({0x0c, 0x41, 0xd0, 0x0b, 0x00}));
}

TEST(Aml, NamesArePaddedAndRooted) {
  EXPECT_EQ(aml::name_string("RTC"), Bytes({'R', 'T', 'C', '_'}));
  EXPECT_EQ(aml::name_string("\\_SB"), Bytes({'\\', '_', 'S', 'B', '_'}));
}

TEST(Aml, ResourceTemplateEndsWithTheEndTag) {
  const Bytes b = aml::resource_template({aml::io_port(0x3f8, 8), aml::interrupt(4)});
  // Buffer op, PkgLength, BufferSize (byte const 8+9+2 = 19), then the descriptors.
  ASSERT_EQ(b.size(), 1u + 1 + 2 + 19);
  EXPECT_EQ(b[0], 0x11);
  EXPECT_EQ(b[2], 0x0a);
  EXPECT_EQ(b[3], 19);
  EXPECT_EQ(b[4], 0x47);             // I/O port descriptor
  EXPECT_EQ(b[12], 0x89);            // extended interrupt descriptor
  EXPECT_EQ(b[17], 4);               // GSI 4
  EXPECT_EQ(b[b.size() - 2], 0x79);  // end tag
}

struct Table {
  size_t offset;
  uint32_t length;
};

Table find_table(const std::vector<uint8_t>& b, uint64_t addr) {
  const size_t at = addr - boot::kAcpiAddr;
  uint32_t len;
  std::memcpy(&len, &b[at + 4], 4);
  return {at, len};
}

TEST(Acpi, FadtOffersResetAndSleepRegistersOnThePmPorts) {
  auto t = build_acpi_tables(boot::kAcpiAddr, 2);
  ASSERT_TRUE(t.ok());
  const auto& b = t->bytes;
  uint64_t xsdt, fadt_addr;
  std::memcpy(&xsdt, &b[24], 8);
  std::memcpy(&fadt_addr, &b[xsdt - boot::kAcpiAddr + 36], 8);
  const Table fadt = find_table(b, fadt_addr);
  ASSERT_EQ(std::memcmp(&b[fadt.offset], "FACP", 4), 0);
  uint32_t flags;
  std::memcpy(&flags, &b[fadt.offset + 112], 4);
  EXPECT_TRUE(flags & (1u << 20)) << "hardware-reduced";
  EXPECT_TRUE(flags & (1u << 10)) << "reset register supported";
  auto gas_port = [&](size_t at) {
    EXPECT_EQ(b[fadt.offset + at], 1) << "system I/O space at FADT offset " << at;
    uint64_t port;
    std::memcpy(&port, &b[fadt.offset + at + 4], 8);
    return port;
  };
  EXPECT_EQ(gas_port(116), platform::kAcpiReset);
  EXPECT_EQ(b[fadt.offset + 128], platform::kAcpiResetValue);
  EXPECT_EQ(gas_port(244), platform::kAcpiSleepControl);
  EXPECT_EQ(gas_port(256), platform::kAcpiSleepStatus);
  // The PM timer: both the 32-bit port field and the GAS, dword-wide, and TMR_VAL_EXT.
  EXPECT_TRUE(flags & (1u << 8)) << "32-bit PM timer";
  EXPECT_EQ(gas_port(208), platform::kAcpiPmTimerPort);
  EXPECT_EQ(b[fadt.offset + 209], 32) << "PM timer bit width";
  EXPECT_EQ(b[fadt.offset + 211], 3) << "PM timer dword access";
  uint32_t pm_tmr_blk;
  std::memcpy(&pm_tmr_blk, &b[fadt.offset + 76], 4);
  EXPECT_EQ(pm_tmr_blk, platform::kAcpiPmTimerPort);
  EXPECT_EQ(b[fadt.offset + 91], 4) << "PM_TMR_LEN";
}

std::vector<uint8_t> dsdt_of(const std::vector<uint8_t>& b) {
  uint64_t xsdt, fadt_addr, dsdt_addr;
  std::memcpy(&xsdt, &b[24], 8);
  std::memcpy(&fadt_addr, &b[xsdt - boot::kAcpiAddr + 36], 8);
  std::memcpy(&dsdt_addr, &b[fadt_addr - boot::kAcpiAddr + 140], 8);
  const Table d = find_table(b, dsdt_addr);
  return {b.begin() + static_cast<long>(d.offset),
          b.begin() + static_cast<long>(d.offset + d.length)};
}

// The DSDT as ACPICA's disassembler (the reference parser, the one Linux's interpreter shares)
// prints it; empty when iasl is not installed.
std::string disassemble(const std::vector<uint8_t>& dsdt) {
  if (std::system("command -v iasl >/dev/null 2>&1") != 0) return {};
  char dir[] = "/tmp/shoal-dsdt-XXXXXX";
  EXPECT_NE(mkdtemp(dir), nullptr);
  const std::string aml = std::string(dir) + "/dsdt.aml", dsl = std::string(dir) + "/dsdt.dsl";
  std::ofstream(aml, std::ios::binary)
      .write(reinterpret_cast<const char*>(dsdt.data()), static_cast<long>(dsdt.size()));
  EXPECT_EQ(std::system(("iasl -d " + aml + " >" + dir + "/iasl.log 2>&1").c_str()), 0);
  std::stringstream text;
  text << std::ifstream(dsl).rdbuf();
  std::system(("rm -rf " + std::string(dir)).c_str());
  return text.str();
}

TEST(Acpi, DsdtDescribesEachVirtioMmioTransport) {
  EXPECT_FALSE(build_acpi_tables(boot::kAcpiAddr, 1, platform::kVirtioMmioSlots + 1).ok());
  auto t = build_acpi_tables(boot::kAcpiAddr, 1, 2);
  ASSERT_TRUE(t.ok());
  const std::string d = disassemble(dsdt_of(t->bytes));
  if (d.empty())
    GTEST_SKIP() << "iasl not installed (Debian package acpica-tools): AML not disassembled";
  EXPECT_NE(d.find("Device (VR00)"), std::string::npos) << d;
  EXPECT_NE(d.find("Device (VR01)"), std::string::npos) << d;
  EXPECT_EQ(d.find("Device (VR02)"), std::string::npos) << d;
  EXPECT_NE(d.find("Name (_HID, \"LNRO0005\")"), std::string::npos) << d;
  EXPECT_NE(d.find("Memory32Fixed (ReadWrite,"), std::string::npos) << d;
  EXPECT_NE(d.find("0xFEB00200,"), std::string::npos) << d;  // transport 1's base
  EXPECT_NE(d.find("0x00000200,"), std::string::npos) << d;  // 512 bytes each
  EXPECT_NE(d.find("0x00000011,"), std::string::npos) << d;  // transport 1's GSI, 17
}

TEST(Acpi, DsdtDescribesCom1TheRtcAndS5) {
  auto t = build_acpi_tables(boot::kAcpiAddr, 1);
  ASSERT_TRUE(t.ok());
  const std::vector<uint8_t> dsdt = dsdt_of(t->bytes);
  ASSERT_EQ(std::memcmp(dsdt.data(), "DSDT", 4), 0);
  uint8_t sum = 0;
  for (uint8_t v : dsdt) sum = static_cast<uint8_t>(sum + v);
  EXPECT_EQ(sum, 0);
  const std::string s(dsdt.begin(), dsdt.end());
  EXPECT_NE(s.find("COM1"), std::string::npos);
  EXPECT_NE(s.find("RTC_"), std::string::npos);
  EXPECT_NE(s.find("_S5_"), std::string::npos);

  const std::string d = disassemble(dsdt);
  if (d.empty())
    GTEST_SKIP() << "iasl not installed (Debian package acpica-tools): AML not disassembled";
  EXPECT_NE(d.find("EisaId (\"PNP0501\")"), std::string::npos) << d;
  EXPECT_NE(d.find("EisaId (\"PNP0B00\")"), std::string::npos) << d;
  EXPECT_NE(d.find("0x03F8"), std::string::npos) << d;
  EXPECT_NE(d.find("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )"),
            std::string::npos)
      << d;
  EXPECT_NE(d.find("Name (_S5, Package"), std::string::npos) << d;
}

}  // namespace
}  // namespace shoal

namespace shoal {
namespace {

TEST(ResetVector, StubWritesTheAcpiResetRegisterThenHalts) {
  const std::vector<uint8_t> stub = reset_vector_stub();
  ASSERT_LE(boot::kResetVectorAddr + stub.size(), 0x100000u) << "must end below 1 MiB";
  const uint16_t port = platform::kAcpiReset;
  EXPECT_EQ(stub,
            std::vector<uint8_t>({0xba, static_cast<uint8_t>(port), static_cast<uint8_t>(port >> 8),
                                  0xb0, platform::kAcpiResetValue, 0xee, 0xf4, 0xeb, 0xfd}));
}

}  // namespace
}  // namespace shoal

#include "arch/mptable.hpp"

#include <cstring>
#include <string>

#include "arch/boot_layout.hpp"

namespace shoal {

namespace {

constexpr uint8_t kEntryProcessor = 0, kEntryBus = 1, kEntryIoapic = 2, kEntryIoInterrupt = 3,
                  kEntryLocalInterrupt = 4;
constexpr uint8_t kIntTypeInt = 0, kIntTypeNmi = 1, kIntTypeExtInt = 3;
constexpr int kIsaIrqs = 16;
constexpr uint8_t kApicVersion = 0x14, kIoapicVersion = 0x11;

class Writer {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u16(uint16_t v) { raw(&v, 2); }
  void u32(uint32_t v) { raw(&v, 4); }
  void text(const char* s, size_t n) {
    for (size_t i = 0; i < n; ++i) u8(i < std::strlen(s) ? static_cast<uint8_t>(s[i]) : ' ');
  }
  void raw(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  void put_u16(size_t at, uint16_t v) { std::memcpy(&bytes_[at], &v, 2); }
  void put_u32(size_t at, uint32_t v) { std::memcpy(&bytes_[at], &v, 4); }
  // Sets bytes_[at] so that [from, to) sums to zero.
  void checksum(size_t at, size_t from, size_t to) {
    uint8_t sum = 0;
    for (size_t i = from; i < to; ++i) sum = static_cast<uint8_t>(sum + bytes_[i]);
    bytes_[at] = static_cast<uint8_t>(-sum);
  }
  size_t size() const { return bytes_.size(); }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace

Result<std::vector<uint8_t>> build_mptable(uint64_t addr, int vcpus) {
  if (vcpus < 1 || vcpus > kMpTableMaxVcpus)
    return Error("MP table: " + std::to_string(vcpus) + " vCPUs (1.." +
                 std::to_string(kMpTableMaxVcpus) + " supported)");
  Writer w;
  const uint32_t table_addr = static_cast<uint32_t>(addr + 16);
  // Floating pointer structure.
  w.text("_MP_", 4);
  w.u32(table_addr);
  w.u8(1);                              // length in 16-byte units
  w.u8(4);                              // spec revision 1.4
  w.u8(0);                              // checksum, below
  for (int i = 0; i < 5; ++i) w.u8(0);  // feature bytes: 0 = a configuration table follows
  w.checksum(10, 0, 16);

  // Configuration table header.
  const size_t hdr = w.size();
  w.text("PCMP", 4);
  w.u16(0);  // base table length, below
  w.u8(4);
  w.u8(0);  // checksum, below
  w.text("SHOAL", 8);
  w.text("SHOALVM", 12);
  w.u32(0);  // OEM table pointer
  w.u16(0);  // OEM table size
  w.u16(0);  // entry count, below
  w.u32(static_cast<uint32_t>(boot::kLapicAddr));
  w.u16(0);  // extended table length
  w.u8(0);   // extended table checksum
  w.u8(0);
  uint16_t entries = 0;

  for (int cpu = 0; cpu < vcpus; ++cpu, ++entries) {
    w.u8(kEntryProcessor);
    w.u8(static_cast<uint8_t>(cpu));  // local APIC ID = vCPU index
    w.u8(kApicVersion);
    w.u8(static_cast<uint8_t>(0x01 | (cpu == 0 ? 0x02 : 0)));  // enabled, BSP
    w.u32(0x600);                                              // CPU signature: family 6
    w.u32(0x201);                                              // features: FPU, APIC
    w.u32(0);
    w.u32(0);
  }
  ++entries;
  w.u8(kEntryBus);
  w.u8(0);
  w.text("ISA", 6);

  const uint8_t ioapic_id = static_cast<uint8_t>(vcpus);
  ++entries;
  w.u8(kEntryIoapic);
  w.u8(ioapic_id);
  w.u8(kIoapicVersion);
  w.u8(0x01);  // usable
  w.u32(static_cast<uint32_t>(boot::kIoapicAddr));

  // ISA IRQ n -> IOAPIC pin n, matching KVM's default GSI routing (no 0->2 override).
  for (int irq = 0; irq < kIsaIrqs; ++irq, ++entries) {
    w.u8(kEntryIoInterrupt);
    w.u8(kIntTypeInt);
    w.u16(0);  // conforming polarity and trigger (ISA: active high, edge)
    w.u8(0);   // source bus
    w.u8(static_cast<uint8_t>(irq));
    w.u8(ioapic_id);
    w.u8(static_cast<uint8_t>(irq));
  }
  // Virtual wire: the PIC's output on LINT0 (ExtINT), NMI on LINT1 of every CPU.
  const uint8_t lint_types[] = {kIntTypeExtInt, kIntTypeNmi};
  for (uint8_t lint = 0; lint < 2; ++lint, ++entries) {
    w.u8(kEntryLocalInterrupt);
    w.u8(lint_types[lint]);
    w.u16(0);
    w.u8(0);
    w.u8(0);
    w.u8(0xff);  // all local APICs
    w.u8(lint);
  }
  w.put_u16(hdr + 4, static_cast<uint16_t>(w.size() - hdr));
  w.put_u16(hdr + 34, entries);
  w.checksum(hdr + 7, hdr, w.size());
  return w.take();
}

}  // namespace shoal

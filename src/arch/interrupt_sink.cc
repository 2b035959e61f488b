#include "arch/interrupt_sink.hpp"

#include <cstring>

#include "arch/x86_cpu.hpp"

namespace shoal {

namespace {

constexpr uint64_t kGdtOffset = 0x0, kIdtOffset = 0x100, kCodeOffset = 0x1000;
constexpr uint64_t kStubsOffset = kSinkStubsGpa - kSinkGpa, kStubBytes = kSinkStubBytes;
constexpr uint64_t kStacksOffset = 0x3000, kStackBytes = 256;
static_assert(kStubsOffset + 256 * kStubBytes <= kStacksOffset);
static_assert(kStacksOffset + kSinkMaxVcpus * kStackBytes <= kSinkBytes);

constexpr uint16_t kCodeSel = 0x08, kDataSel = 0x10, kTssSel = 0x18;
constexpr uint64_t sink_gdt[] = {0, gdt_entry(0xc09b, 0, 0xfffff), gdt_entry(0xc093, 0, 0xfffff),
                                 gdt_entry(0x008b, 0, 0x67)};

constexpr uint32_t kLapic = 0xfee0'0000;
constexpr uint32_t kTpr = 0x80, kEoi = 0xb0, kSvr = 0xf0, kIsr = 0x100, kLvtTimer = 0x320,
                   kLvtThermal = 0x330, kLvtPerf = 0x340, kLvtError = 0x370, kTimerCount = 0x380;
constexpr uint32_t kIrr = 0x200;
constexpr uint32_t kMasked = 0x10000;
constexpr uint64_t kApicBaseX2apic = 1u << 10;

// Appends x86 machine code; jumps are patched once their target is known.
class Code {
 public:
  explicit Code(std::vector<uint8_t>& image, uint64_t at) : image_(image), at_(at) {}
  uint64_t here() const { return at_; }
  void bytes(std::initializer_list<uint8_t> b) {
    for (uint8_t x : b) image_[at_++] = x;
  }
  void u32(uint32_t v) {
    std::memcpy(&image_[at_], &v, 4);
    at_ += 4;
  }
  // movl $value, absolute address
  void store(uint32_t address, uint32_t value) {
    bytes({0xc7, 0x05});
    u32(address);
    u32(value);
  }
  // A short jump (jmp/jne/loop: `opcode`) to `target`, which must be within 127 bytes.
  void short_jump(uint8_t opcode, uint64_t target) {
    bytes({opcode, 0});
    image_[at_ - 1] = static_cast<uint8_t>(static_cast<int8_t>(target - at_));
  }
  uint64_t short_jump_to_patch(uint8_t opcode) {
    bytes({opcode, 0});
    return at_;
  }
  void patch(uint64_t after, uint64_t target) {
    image_[after - 1] = static_cast<uint8_t>(static_cast<int8_t>(target - after));
  }

 private:
  std::vector<uint8_t>& image_;
  uint64_t at_;
};

}  // namespace

std::vector<uint8_t> build_interrupt_sink() {
  std::vector<uint8_t> image(kSinkBytes, 0);
  std::memcpy(&image[kGdtOffset], sink_gdt, sizeof sink_gdt);

  for (uint64_t v = 0; v < 256; ++v) {
    const uint32_t stub = static_cast<uint32_t>(kSinkGpa + kStubsOffset + v * kStubBytes);
    const uint32_t lo = (uint32_t{kCodeSel} << 16) | (stub & 0xffff);
    const uint32_t hi = (stub & 0xffff0000) | 0x8e00;  // present, DPL 0, 32-bit interrupt gate
    std::memcpy(&image[kIdtOffset + v * 8], &lo, 4);
    std::memcpy(&image[kIdtOffset + v * 8 + 4], &hi, 4);
  }

  // Start-up: the LAPIC as the header says, then drain the in-service register, then idle.
  Code c(image, kCodeOffset);
  c.store(kLapic + kTpr, 0);
  c.store(kLapic + kSvr, 0x100 | kSpuriousVector);
  c.store(kLapic + kLvtTimer, kMasked);
  c.store(kLapic + kTimerCount, 0);
  c.store(kLapic + kLvtThermal, kMasked);
  c.store(kLapic + kLvtPerf, kMasked);
  c.store(kLapic + kLvtError, kMasked);
  // Every stub comes back here: the stack reset (EBP holds its top; nothing is ever popped,
  // so that no IRET is needed: the nested PVM host cannot emulate one outside real mode),
  // every vector in service ended with an EOI (a stub reports its vector before it comes
  // here), then idle with interrupts on.
  const uint64_t drain = c.here();
  c.bytes({0x89, 0xec});  // mov %ebp, %esp
  c.bytes({0xbe});        // mov $ISR0, %esi
  c.u32(kLapic + kIsr);
  c.bytes({0xb9, 8, 0, 0, 0});  // mov $8, %ecx
  const uint64_t scan = c.here();
  c.bytes({0x83, 0x3e, 0x00});                          // cmpl $0, (%esi)
  const uint64_t to_eoi = c.short_jump_to_patch(0x75);  // jne eoi
  c.bytes({0x83, 0xc6, 0x10});                          // add $0x10, %esi
  c.short_jump(0xe2, scan);                             // loop scan
  const uint64_t to_idle = c.short_jump_to_patch(0xeb);
  c.patch(to_eoi, c.here());
  c.store(kLapic + kEoi, 0);
  c.short_jump(0xeb, drain);
  c.patch(to_idle, c.here());
  const uint64_t idle = c.here();
  c.bytes({0xfb, 0xf4});  // sti; hlt
  c.short_jump(0xeb, idle);

  for (uint64_t v = 0; v < 256; ++v) {
    Code s(image, kStubsOffset + v * kStubBytes);
    // One instruction reports the vector, in the address it writes: an NMI that lands right
    // after it cannot make the report say anything else. Not a port: the in-kernel PIT and
    // PIC take ports 0x20-0x21, 0x40-0x43, 0x61, 0xa0-0xa1 without an exit. (A spurious
    // interrupt reports nothing.)
    if (v != kSpuriousVector) {
      s.bytes({0xa2});  // mov %al, kSinkReportGpa + v
      s.u32(static_cast<uint32_t>(kSinkReportGpa + v));
    }
    s.bytes({0xe9});  // jmp drain
    s.u32(static_cast<uint32_t>(drain - (s.here() + 4)));
  }
  return image;
}

kvm_sregs sink_sregs(const kvm_sregs& current) {
  kvm_sregs s = current;
  s.cs = segment_from_gdt(sink_gdt[kCodeSel / 8], kCodeSel);
  s.ds = s.es = s.fs = s.gs = s.ss = segment_from_gdt(sink_gdt[kDataSel / 8], kDataSel);
  s.tr = segment_from_gdt(sink_gdt[kTssSel / 8], kTssSel);
  s.gdt.base = kSinkGpa + kGdtOffset;
  s.gdt.limit = sizeof sink_gdt - 1;
  s.idt.base = kSinkGpa + kIdtOffset;
  s.idt.limit = 256 * 8 - 1;
  s.cr0 = 0x11;  // PE, ET: protected mode, no paging
  s.cr2 = 0;
  s.cr3 = 0;
  s.cr4 = 0;
  s.cr8 = 0;
  s.efer = 0;
  s.apic_base &= ~kApicBaseX2apic;  // host-initiated, so KVM allows leaving x2APIC mode
  std::memset(s.interrupt_bitmap, 0, sizeof s.interrupt_bitmap);
  return s;
}

kvm_regs sink_regs(int id) {
  kvm_regs r{};
  r.rip = kSinkGpa + kCodeOffset;
  r.rsp = kSinkGpa + kStacksOffset + static_cast<uint64_t>(id + 1) * kStackBytes;
  r.rbp = r.rsp;  // the stubs reset the stack from it
  r.rflags = 0x2;
  return r;
}

std::vector<uint8_t> pending_vectors(const kvm_lapic_state& lapic) {
  std::vector<uint8_t> out;
  for (uint32_t word = 0; word < 8; ++word) {
    uint32_t bits;
    std::memcpy(&bits, lapic.regs + kIrr + word * 0x10, 4);
    for (uint32_t b = 0; b < 32; ++b)
      if (bits & (1u << b)) out.push_back(static_cast<uint8_t>(word * 32 + b));
  }
  return out;
}

void clear_pending_vectors(kvm_lapic_state& lapic) {
  for (uint32_t word = 0; word < 8; ++word) std::memset(lapic.regs + kIrr + word * 0x10, 0, 4);
}

}  // namespace shoal

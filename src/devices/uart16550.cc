#include "devices/uart16550.hpp"

#include <utility>

namespace shoal {

Uart16550::Uart16550(Output output, IrqTrigger irq)
    : output_(std::move(output)), irq_(std::move(irq)) {}

void Uart16550::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = offset + i < 8 ? read_register(static_cast<uint8_t>(offset + i)) : 0xff;
}

void Uart16550::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i)
    if (offset + i < 8) write_register(static_cast<uint8_t>(offset + i), data[i]);
}

void Uart16550::receive(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  const bool was = irq_pending();
  for (uint8_t b : bytes)
    if (rx_.size() < kRxFifoLimit) rx_.push_back(b);
  update_irq(was);
}

uint8_t Uart16550::interrupt_id() const {
  if ((ier_ & kIerRda) && !rx_.empty()) return kIirRda;
  if ((ier_ & kIerThre) && thre_pending_) return kIirThre;
  return kIirNone;
}

void Uart16550::update_irq(bool was_pending) {
  // The ISA line is edge-triggered (MP table: ISA conforming): signal new interrupts only.
  if (!was_pending && irq_pending() && irq_) irq_();
}

uint8_t Uart16550::read_register(uint8_t reg) {
  const bool was = irq_pending();
  uint8_t value = 0;
  switch (reg) {
    case kData:
      if (lcr_ & kLcrDlab) return dll_;
      if (!rx_.empty()) {
        value = rx_.front();
        rx_.pop_front();
      }
      break;
    case kIer:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIirFcr:
      value = interrupt_id() | (fifo_enabled_ ? kIirFifo : 0);
      // Reading IIR acknowledges a THRE interrupt (16550 datasheet).
      if (interrupt_id() == kIirThre) thre_pending_ = false;
      break;
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDr);
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return 0xb0;  // DCD, DSR, CTS: a cable is attached and ready.
    case kScr:
      return scr_;
  }
  update_irq(was);
  return value;
}

void Uart16550::write_register(uint8_t reg, uint8_t value) {
  const bool was = irq_pending();
  switch (reg) {
    case kData:
      if (lcr_ & kLcrDlab) {
        dll_ = value;
        return;
      }
      if (mcr_ & kMcrLoop) {
        if (rx_.size() < kRxFifoLimit) rx_.push_back(value);
      } else if (output_) {
        output_(value);
      }
      thre_pending_ = true;  // sent at once: THR is empty again
      break;
    case kIer:
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
        return;
      }
      // Enabling THRE with an empty THR raises it at once; drivers rely on that.
      if ((value & kIerThre) && !(ier_ & kIerThre)) thre_pending_ = true;
      ier_ = value & 0x0f;
      break;
    case kIirFcr:
      fifo_enabled_ = value & 0x01;
      if (value & 0x02) rx_.clear();
      break;
    case kLcr:
      lcr_ = value;
      return;
    case kMcr:
      mcr_ = value & 0x1f;
      return;
    case kScr:
      scr_ = value;
      return;
    default:
      return;  // LSR and MSR are read-only
  }
  update_irq(was);
}

// Registers, the FIFO state and the bytes typed but not yet read.
void Uart16550::save_state(WireWriter& out) const {
  std::lock_guard lock(mu_);
  out.put(ier_).put(lcr_).put(mcr_).put(scr_).put(dll_).put(dlm_);
  out.put<uint8_t>(fifo_enabled_ ? 1 : 0).put<uint8_t>(thre_pending_ ? 1 : 0);
  out.put<uint32_t>(static_cast<uint32_t>(rx_.size()));
  for (uint8_t b : rx_) out.put(b);
}

Status Uart16550::restore_state(WireReader& in) {
  uint8_t ier, lcr, mcr, scr, dll, dlm, fifo, thre;
  uint32_t rx = 0;
  if (!in.get(ier) || !in.get(lcr) || !in.get(mcr) || !in.get(scr) || !in.get(dll) ||
      !in.get(dlm) || !in.get(fifo) || !in.get(thre) || !in.get(rx))
    return Error("registers: truncated");
  if (fifo > 1 || thre > 1) return Error("flags: not 0 or 1");
  if (rx > kRxFifoLimit) return Error("receive FIFO: " + std::to_string(rx) + " bytes");
  std::deque<uint8_t> bytes;
  for (uint32_t i = 0; i < rx; ++i) {
    uint8_t b;
    if (!in.get(b)) return Error("receive FIFO: truncated");
    bytes.push_back(b);
  }
  std::lock_guard lock(mu_);
  ier_ = ier & 0x0f;
  lcr_ = lcr;
  mcr_ = mcr & 0x1f;
  scr_ = scr;
  dll_ = dll;
  dlm_ = dlm;
  fifo_enabled_ = fifo == 1;
  thre_pending_ = thre == 1;
  rx_ = std::move(bytes);
  return {};
}

}  // namespace shoal

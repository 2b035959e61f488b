// A 16550A UART as Linux's 8250 driver, earlyprintk and our test guest drive it: transmit is
// instant (THR is always empty), receive has a FIFO fed by the host, loopback works (the
// 8250 probe tests it), and interrupts follow IER with the usual IIR priorities.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "devices/io_bus.hpp"

namespace shoal {

class Uart16550 : public BusDevice {
 public:
  using Output = std::function<void(uint8_t)>;
  using IrqTrigger = std::function<void()>;  // an edge on the UART's ISA IRQ line

  Uart16550(Output output, IrqTrigger irq);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Bytes typed by the host side (console input).
  void receive(std::span<const uint8_t> bytes);

  void save_state(WireWriter& out) const override;
  Status restore_state(WireReader& in) override;

  // Register numbers (offsets from the base port).
  static constexpr uint8_t kData = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                           kScr = 7;
  static constexpr uint8_t kLcrDlab = 0x80;
  static constexpr uint8_t kIerRda = 0x01, kIerThre = 0x02;
  static constexpr uint8_t kIirNone = 0x01, kIirThre = 0x02, kIirRda = 0x04, kIirFifo = 0xc0;
  static constexpr uint8_t kLsrDr = 0x01, kLsrThre = 0x20, kLsrTemt = 0x40;
  static constexpr uint8_t kMcrLoop = 0x10;
  static constexpr size_t kRxFifoLimit = 4096;

 private:
  uint8_t read_register(uint8_t reg);
  void write_register(uint8_t reg, uint8_t value);
  uint8_t interrupt_id() const;
  void update_irq(bool was_pending);
  bool irq_pending() const { return interrupt_id() != kIirNone; }

  mutable std::mutex mu_;
  Output output_;
  IrqTrigger irq_;
  std::deque<uint8_t> rx_;
  uint8_t ier_ = 0, lcr_ = 0x03, mcr_ = 0x08, scr_ = 0, dll_ = 0x0c, dlm_ = 0;
  bool fifo_enabled_ = false;
  bool thre_pending_ = false;  // cleared by reading IIR or writing THR
};

}  // namespace shoal

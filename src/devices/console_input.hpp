// Feeds the host's stdin to the guest's UART (shoal run --serial stdio), as QEMU's
// -serial stdio does. A terminal is put in raw mode for the run and restored after.
#pragma once

#include <termios.h>

#include <atomic>
#include <memory>
#include <thread>

#include "devices/uart16550.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class ConsoleInput {
 public:
  // Starts reading `fd` (not owned) into `uart`.
  ConsoleInput(int fd, std::shared_ptr<Uart16550> uart);
  ConsoleInput(const ConsoleInput&) = delete;
  ConsoleInput& operator=(const ConsoleInput&) = delete;
  ~ConsoleInput();  // stops the reader and restores the terminal

 private:
  void loop();

  int fd_;
  std::shared_ptr<Uart16550> uart_;
  UniqueFd stop_;  // eventfd: wakes the reader's poll() to exit
  bool restore_tty_ = false;
  termios saved_{};
  std::thread thread_;
};

}  // namespace shoal

#include "devices/console_input.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace shoal {

ConsoleInput::ConsoleInput(int fd, std::shared_ptr<Uart16550> uart)
    : fd_(fd), uart_(std::move(uart)), stop_(eventfd(0, EFD_CLOEXEC)) {
  if (isatty(fd_) && tcgetattr(fd_, &saved_) == 0) {
    // Raw input so the guest sees every key (Ctrl-C included, as on a real serial line);
    // output processing is left alone.
    termios raw = saved_;
    raw.c_lflag &= ~(ICANON | ECHO | ISIG | IEXTEN);
    raw.c_iflag &= ~(IXON | ICRNL);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    restore_tty_ = tcsetattr(fd_, TCSANOW, &raw) == 0;
  }
  thread_ = std::thread([this] { loop(); });
}

ConsoleInput::~ConsoleInput() {
  const uint64_t one = 1;
  if (write(stop_.get(), &one, sizeof one) < 0) {
    // Nothing else can wake the reader; it exits at the next input or end of file.
  }
  if (thread_.joinable()) thread_.join();
  if (restore_tty_) tcsetattr(fd_, TCSANOW, &saved_);
}

void ConsoleInput::loop() {
  pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & (POLLIN | POLLHUP))) continue;
    uint8_t buf[256];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return;  // end of input: the guest just sees no more bytes
    uart_->receive(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
  }
}

}  // namespace shoal

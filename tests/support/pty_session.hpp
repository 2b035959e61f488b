// Runs a program on a pseudo-terminal, as a person at a terminal would (tests only): waits for
// text to appear, types, and waits for the program to exit.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace shoal::test {

class PtySession {
 public:
  // Starts argv[0] with stdin, stdout and stderr on a new pty; nullptr if that fails.
  static std::unique_ptr<PtySession> spawn(const std::vector<std::string>& argv);
  ~PtySession();  // kills the program if it still runs
  PtySession(const PtySession&) = delete;
  PtySession& operator=(const PtySession&) = delete;

  // Waits until output not yet matched contains `text`; false on timeout or end of output.
  // A match consumes the output up to its end, so the same text can be expected again.
  bool expect(const std::string& text, std::chrono::milliseconds timeout);
  void send(const std::string& text);
  // Waits for the program to exit (reading its output meanwhile): its exit code, 128+N for
  // signal N, or -1 on timeout (the program is then killed).
  int wait_exit(std::chrono::milliseconds timeout);
  // Everything the program printed so far.
  const std::string& output() const { return out_; }
  // What each of the program's threads is doing now (name, state, kernel stack when
  // readable): for a test that timed out, whether the vCPUs were halted, waiting on a page
  // or running.
  std::string threads() const;

 private:
  PtySession(pid_t pid, int master) : pid_(pid), master_(master) {}
  // Reads what is there, waiting at most `wait`; false once the pty is closed.
  bool pump(std::chrono::milliseconds wait);

  pid_t pid_;
  int master_;
  bool closed_ = false;
  int status_ = -1;
  std::string out_;
  size_t matched_ = 0;
};

}  // namespace shoal::test

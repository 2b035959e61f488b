#include "support/pty_session.hpp"

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace shoal::test {

namespace {
using Clock = std::chrono::steady_clock;
}

std::unique_ptr<PtySession> PtySession::spawn(const std::vector<std::string>& argv) {
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  if (pid < 0) return nullptr;
  if (pid == 0) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return std::unique_ptr<PtySession>(new PtySession(pid, master));
}

std::string PtySession::threads() const {
  namespace fs = std::filesystem;
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  };
  std::string out = "threads of pid " + std::to_string(pid_) + ":\n";
  std::error_code ec;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid_) + "/task", ec)) {
    std::string comm = slurp(t.path() / "comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    const std::string stat = slurp(t.path() / "stat");
    const auto paren = stat.rfind(')');
    // After the comm: state (field 3), utime and stime (14, 15), guest_time (43), in ticks:
    // a vCPU thread that runs tells guest time (the guest spins) from user time (shoal does).
    std::vector<std::string> f;
    if (paren != std::string::npos) {
      std::istringstream rest(stat.substr(paren + 2));
      for (std::string w; rest >> w;) f.push_back(w);
    }
    auto field = [&](size_t n) { return n - 3 < f.size() ? f[n - 3] : std::string("?"); };
    out += "  " + t.path().filename().string() + " " + comm + " " + field(3) + " user " +
           field(14) + " system " + field(15) + " guest " + field(43) + " ticks, wchan " +
           slurp(t.path() / "wchan") + "\n";
    std::istringstream stack(slurp(t.path() / "stack"));
    for (std::string line; std::getline(stack, line);) out += "      " + line + "\n";
  }
  return out;
}

PtySession::~PtySession() {
  if (status_ < 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  close(master_);
}

bool PtySession::pump(std::chrono::milliseconds wait) {
  if (closed_) return false;
  pollfd p{master_, POLLIN, 0};
  const int n = poll(&p, 1, static_cast<int>(wait.count()));
  if (n <= 0) return true;
  char buf[4096];
  const ssize_t got = read(master_, buf, sizeof buf);
  // EIO: every slave descriptor is closed, i.e. the program (and its children) ended.
  if (got < 0 && errno == EINTR) return true;
  if (got <= 0) {
    closed_ = true;
    return false;
  }
  out_.append(buf, static_cast<size_t>(got));
  return true;
}

bool PtySession::expect(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (const size_t at = out_.find(text, matched_); at != std::string::npos) {
      matched_ = at + text.size();
      return true;
    }
    if (closed_) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pump(std::min(left, std::chrono::milliseconds(100)));
  }
}

void PtySession::send(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(master_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

int PtySession::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (status_ < 0) {
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      // What the program wrote last is still in the pty: drain it.
      for (pollfd p{master_, POLLIN, 0}; !closed_ && poll(&p, 1, 0) > 0;)
        pump(std::chrono::milliseconds(0));
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (Clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      status_ = 255;
      return -1;
    }
    pump(std::chrono::milliseconds(50));
  }
  return status_;
}

}  // namespace shoal::test

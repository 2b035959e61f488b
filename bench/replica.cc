// What a storage replica (--replica) costs a running guest: the test guest's `touch-random 1024`
// (writes 1 GiB in a scattered order, then reads it all back) with no replica, and with one
// checkpoint every 1000, 200 and 100 ms; the whole run (process start to exit) against the
// run without, and per checkpoint the time the guest was paused and the time writing took
// (beside the running guest), from shoal's debug log. The replica directory is on /tmp.
//   replica [--json] [RUNS]
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace {

using shoal::test::ProcessResult;
using shoal::test::run_process;

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Every number that follows `key` in `text` ("guest paused 1.23 ms").
std::vector<double> numbers_after(const std::string& text, const std::string& key) {
  std::vector<double> out;
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1))
    out.push_back(std::atof(text.c_str() + at + key.size()));
  return out;
}

struct Case {
  int interval_ms;  // 0: no replica
  std::vector<double> whole_ms, pause_ms, write_ms;
  double checkpoints = 0;
  std::string failure;
};

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int runs = 3;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else {
      runs = std::max(1, std::atoi(argv[i]));
    }
  }
  const std::string dir = "/tmp/shoal-bench-replica-" + std::to_string(getpid());
  std::vector<Case> cases = {{0, {}, {}, {}, 0, {}},
                             {1000, {}, {}, {}, 0, {}},
                             {200, {}, {}, {}, 0, {}},
                             {100, {}, {}, {}, 0, {}}};
  for (int r = 0; r < runs; ++r)
    for (Case& c : cases) {
      if (!c.failure.empty()) continue;
      std::vector<std::string> argv_ = {
          SHOAL_BINARY, "run",       "--kernel",    SHOAL_TEST_GUEST,
          "--memory",   "2G",        "--cmdline",   "touch-random 1024",
          "--serial",   "/dev/null", "--log-level", "debug"};
      if (c.interval_ms > 0) {
        argv_.insert(argv_.end(),
                     {"--replica", dir, "--replica-interval", std::to_string(c.interval_ms)});
      }
      ProcessResult p = run_process(argv_, std::chrono::seconds(300));
      for (const char* f : {"/memory.img", "/state.snap", "/journal"}) ::unlink((dir + f).c_str());
      ::rmdir(dir.c_str());
      if (p.exit_code != 0) {
        c.failure = "exit " + std::to_string(p.exit_code) + ": " + p.err.substr(0, 300);
        continue;
      }
      c.whole_ms.push_back(p.seconds * 1000);
      const auto pauses = numbers_after(p.err, "guest paused ");
      const auto writes = numbers_after(p.err, "written in ");
      c.pause_ms.insert(c.pause_ms.end(), pauses.begin(), pauses.end());
      c.write_ms.insert(c.write_ms.end(), writes.begin(), writes.end());
      c.checkpoints += static_cast<double>(pauses.size()) / runs;
    }
  const double base = median(cases[0].whole_ms);
  if (json) {
    std::printf("{\"bench\":\"replica\",\"runs\":%d,\"cases\":[", runs);
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      std::printf(
          "%s{\"interval_ms\":%d,\"whole_ms\":%.1f,\"vs_none\":%.3f,\"checkpoints\":%.1f,"
          "\"pause_p50_ms\":%.2f,\"pause_max_ms\":%.2f,\"write_p50_ms\":%.1f}",
          i ? "," : "", c.interval_ms, median(c.whole_ms), median(c.whole_ms) / base, c.checkpoints,
          median(c.pause_ms),
          c.pause_ms.empty() ? -1 : *std::max_element(c.pause_ms.begin(), c.pause_ms.end()),
          median(c.write_ms));
    }
    std::printf("]}\n");
  } else {
    std::printf(
        "touch-random 1024 (2 GiB guest, 1 vCPU) with a replica on /tmp, median of %d runs\n",
        runs);
    std::printf("%-10s %12s %9s %12s %14s %14s %14s\n", "interval", "whole", "vs none",
                "checkpoints", "pause p50", "pause max", "write p50");
    for (const Case& c : cases) {
      const std::string name = c.interval_ms ? std::to_string(c.interval_ms) + " ms" : "none";
      std::printf("%-10s %9.1f ms %8.2fx %12.1f %11.2f ms %11.2f ms %11.1f ms\n", name.c_str(),
                  median(c.whole_ms), median(c.whole_ms) / base, c.checkpoints, median(c.pause_ms),
                  c.pause_ms.empty() ? -1 : *std::max_element(c.pause_ms.begin(), c.pause_ms.end()),
                  median(c.write_ms));
    }
  }
  int failed = 0;
  for (const Case& c : cases)
    if (!c.failure.empty()) {
      std::fprintf(stderr, "interval %d: %s\n", c.interval_ms, c.failure.c_str());
      ++failed;
    }
  return failed == 0 ? 0 : 1;
}

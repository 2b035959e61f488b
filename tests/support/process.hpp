// Runs a program with a deadline and collects what it printed (tests only).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace shoal::test {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed
  bool timed_out = false;
  bool stopped_early = false;  // `stop_at` was seen and the process killed
  std::string out;             // stdout
  std::string err;             // stderr
  double seconds = 0;
  double seconds_to_stop_at = -1;
  double seconds_to_mark = -1;  // when stdout or stderr first contained `mark`
  long max_rss_kb = 0;          // the child's peak resident set (wait4's ru_maxrss)
};

// Runs argv[0] with `args`; kills it after `timeout`, or once stdout contains `stop_at`
// (when not empty). Notes when stdout or stderr first contains `mark` (when not empty).
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::seconds timeout,
                          const std::string& stop_at = "", const std::string& mark = "");

// The end of what it printed, for a failed expectation's message: the last `bytes` of stdout,
// then all of stderr.
std::string output_tail(const ProcessResult& r, size_t bytes = 4000);

}  // namespace shoal::test

// shoal's log: lines formatted with fmt, written by one compiled backend (spdlog, in
// base/log.cc). Only that file includes spdlog: header-only spdlog (Debian ships no static
// archive, and its shared library would cost every start ~0.2 ms) added ~7 s of compile time to
// each of the 20 files that logged: the clean plain build took 302 s, and 250 s since.
#pragma once

#include <fmt/format.h>

#include <string_view>
#include <utility>

namespace shoal::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// Whether a line at `level` would be written (one atomic load): callers format only then.
bool enabled(Level level);
void write(Level level, std::string_view line);

// Logs to stderr from now on, at the level named trace|debug|info|warn|error|critical|off
// (the CLI checks the name). Under systemd (JOURNAL_STREAM set) the journal stamps time and
// unit itself, so lines carry neither colours nor a timestamp.
void setup(std::string_view level_name);

template <typename... Args>
void at(Level level, fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(level)) write(level, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void trace(fmt::format_string<Args...> format, Args&&... args) {
  at(Level::kTrace, format, std::forward<Args>(args)...);
}
template <typename... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) {
  at(Level::kDebug, format, std::forward<Args>(args)...);
}
template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  at(Level::kInfo, format, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  at(Level::kWarn, format, std::forward<Args>(args)...);
}
template <typename... Args>
void error(fmt::format_string<Args...> format, Args&&... args) {
  at(Level::kError, format, std::forward<Args>(args)...);
}

}  // namespace shoal::log

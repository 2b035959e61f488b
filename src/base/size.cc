#include "shoal/size.hpp"

#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>

namespace shoal {

Error errno_error(std::string_view what, int err) {
  return Error(std::string(what) + ": " + std::strerror(err));
}

Result<uint64_t> parse_size(std::string_view text, uint64_t bare_unit) {
  const std::string quoted = "'" + std::string(text) + "'";
  if (text.empty()) return Error("empty size");
  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec == std::errc::result_out_of_range) return Error("size " + quoted + " is too large");
  if (ec != std::errc() || end == text.data())
    return Error("size " + quoted + " does not start with a number");
  std::string suffix(end, text.data() + text.size());
  for (char& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  uint64_t unit = 0;
  if (suffix.empty()) {
    unit = bare_unit;
  } else {
    static constexpr struct {
      const char* name;
      uint64_t unit;
    } kUnits[] = {{"B", 1}, {"K", KiB}, {"M", MiB}, {"G", GiB}, {"T", TiB}};
    for (const auto& u : kUnits) {
      const std::string n = u.name;
      if (suffix == n || (n != "B" && (suffix == n + "B" || suffix == n + "IB"))) unit = u.unit;
    }
    if (unit == 0)
      return Error("unknown size suffix '" + std::string(end, text.data() + text.size()) + "' in " +
                   quoted + " (use K, M, G or T)");
  }
  if (number > std::numeric_limits<uint64_t>::max() / unit)
    return Error("size " + quoted + " is too large");
  return number * unit;
}

std::string format_hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

std::string format_size(uint64_t bytes) {
  static constexpr struct {
    const char* name;
    uint64_t unit;
  } kUnits[] = {{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}};
  for (const auto& u : kUnits)
    if (bytes >= u.unit && bytes % u.unit == 0)
      return std::to_string(bytes / u.unit) + " " + u.name;
  return std::to_string(bytes) + " B";
}

}  // namespace shoal

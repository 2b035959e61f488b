// The pod spec parser's YAML walker (pod_spec.cc): collects "path: problem" errors instead of
// stopping at the first, so that one run names every problem of a spec.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "shoal/size.hpp"

namespace shoal::pod_yaml {

// Walks the YAML tree, collecting "path: problem" errors instead of stopping at the first.
class Checker {
 public:
  std::vector<std::string> errors;

  void error(const std::string& path, const YAML::Node& at, const std::string& problem) {
    std::string where = path;
    if (at.IsDefined() && at.Mark().line >= 0)
      where += " (line " + std::to_string(at.Mark().line + 1) + ")";
    errors.push_back(where + ": " + problem);
  }

  static std::string kind_of(const YAML::Node& n) {
    switch (n.Type()) {
      case YAML::NodeType::Map:
        return "a mapping";
      case YAML::NodeType::Sequence:
        return "a list";
      case YAML::NodeType::Null:
        return "nothing";
      case YAML::NodeType::Scalar:
        return "'" + n.Scalar() + "'";
      default:
        return "nothing";
    }
  }

  bool map(const YAML::Node& n, const std::string& path) {
    if (n.IsMap()) return true;
    error(path, n, "expected a mapping, got " + kind_of(n));
    return false;
  }

  void only_keys(const YAML::Node& m, const std::string& path, const std::set<std::string>& known) {
    for (const auto& kv : m) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (!known.count(key)) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        error(join(path, key), kv.first, "unknown field (known: " + list + ")");
      }
    }
  }

  std::optional<std::string> text(const YAML::Node& m, const std::string& path, const char* key,
                                  bool required) {
    const YAML::Node n = m[key];
    if (!n.IsDefined() || n.IsNull()) {
      if (required) error(join(path, key), m, "required field is missing");
      return std::nullopt;
    }
    if (!n.IsScalar()) {
      error(join(path, key), n, "expected a string, got " + kind_of(n));
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<int64_t> integer(const YAML::Node& n, const std::string& path) {
    if (n.IsScalar()) {
      int64_t v = 0;
      const std::string& s = n.Scalar();
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size()) return v;
    }
    error(path, n, "expected an integer, got " + kind_of(n));
    return std::nullopt;
  }

  std::optional<uint64_t> size(const YAML::Node& n, const std::string& path) {
    if (!n.IsScalar()) {
      error(path, n, "expected a size such as 512M or 4G, got " + kind_of(n));
      return std::nullopt;
    }
    auto r = parse_size(n.Scalar(), MiB);
    if (!r) {
      error(path, n, r.error().message());
      return std::nullopt;
    }
    return *r;
  }

  // A duration in milliseconds: 1s, 1.5s or 500ms.
  std::optional<uint64_t> millis(const YAML::Node& n, const std::string& path) {
    return duration(n, path, {{"ms", 1}, {"s", 1e3}}, "1s or 500ms");
  }
  // A duration in microseconds: 200us, 5ms or 1s.
  std::optional<uint64_t> micros(const YAML::Node& n, const std::string& path) {
    return duration(n, path, {{"us", 1}, {"ms", 1e3}, {"s", 1e6}}, "200us, 5ms or 1s");
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

 private:
  struct Unit {
    const char* suffix;
    double scale;  // units of the result per one of these
  };
  // A number and one of `units` (longest suffixes first), rounded to the result's unit.
  std::optional<uint64_t> duration(const YAML::Node& n, const std::string& path,
                                   std::initializer_list<Unit> units, const char* example) {
    const std::string t = n.IsScalar() ? n.Scalar() : "";
    for (const Unit u : units) {
      const size_t len = std::char_traits<char>::length(u.suffix);
      if (t.size() <= len || !t.ends_with(u.suffix)) continue;
      double v = 0;
      const char* end_of_number = t.data() + t.size() - len;
      auto [end, ec] = std::from_chars(t.data(), end_of_number, v);
      if (ec == std::errc() && end == end_of_number && v >= 0 && v * u.scale < 1e12)
        return static_cast<uint64_t>(std::llround(v * u.scale));
      break;
    }
    error(path, n, std::string("expected a duration such as ") + example + ", got " + kind_of(n));
    return std::nullopt;
  }
};

}  // namespace shoal::pod_yaml

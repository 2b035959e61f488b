#include "pod/pod_spec.hpp"

#include <arpa/inet.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "arch/platform_ports.hpp"
#include "memory/coherence.hpp"
#include "pod/yaml_checker.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr uint64_t kHomeAlign = 2ull << 20;  // home ranges in whole 2 MiB pieces (pool chunks)

using pod_yaml::Checker;

// "0-3", "0,2,5-6" or a YAML list of integers.
std::vector<int> parse_vcpu_list(Checker& c, const YAML::Node& n, const std::string& path) {
  std::vector<int> out;
  if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i)
      if (auto v = c.integer(n[i], path + "[" + std::to_string(i) + "]"))
        out.push_back(static_cast<int>(*v));
    return out;
  }
  if (!n.IsScalar()) {
    c.error(path, n,
            "expected a list of vCPU numbers or a range like \"0-3\", got " + Checker::kind_of(n));
    return out;
  }
  std::stringstream ss(n.Scalar());
  std::string part;
  while (std::getline(ss, part, ',')) {
    int lo = 0, hi = 0;
    const auto dash = part.find('-');
    const std::string a = part.substr(0, dash),
                      b = dash == std::string::npos ? a : part.substr(dash + 1);
    auto r1 = std::from_chars(a.data(), a.data() + a.size(), lo);
    auto r2 = std::from_chars(b.data(), b.data() + b.size(), hi);
    if (a.empty() || b.empty() || r1.ec != std::errc() || r2.ec != std::errc() ||
        r1.ptr != a.data() + a.size() || r2.ptr != b.data() + b.size() || hi < lo ||
        hi - lo > 4096) {
      c.error(path, n,
              "expected vCPU numbers like \"0-3\" or \"0,2,5-6\", got '" + n.Scalar() + "'");
      return {};
    }
    for (int v = lo; v <= hi; ++v) out.push_back(v);
  }
  return out;
}

struct HostDraft {
  PodHost host;
  bool even_memory = true;
  std::vector<std::string> range_paths;
};

void parse_host(Checker& c, const YAML::Node& h, const std::string& path, HostDraft& d) {
  if (!c.map(h, path)) return;
  c.only_keys(
      h, path,
      {"name", "address", "vcpus", "memory", "zeroPool", "memoryBudget", "maxVcpus", "rdmaDevice"});
  if (auto v = c.text(h, path, "name", true)) d.host.name = *v;
  if (auto v = c.text(h, path, "address", true)) {
    const auto colon = v->rfind(':');
    unsigned port = 0;
    const std::string port_text = colon == std::string::npos ? "" : v->substr(colon + 1);
    auto r = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (colon == std::string::npos || colon == 0 || r.ec != std::errc() ||
        r.ptr != port_text.data() + port_text.size() || port == 0 || port > 65535)
      c.error(path + ".address", h["address"], "expected HOST:PORT, got '" + *v + "'");
    else {
      d.host.host = v->substr(0, colon);
      d.host.port = static_cast<uint16_t>(port);
    }
  }
  if (h["vcpus"].IsDefined())
    d.host.vcpus = parse_vcpu_list(c, h["vcpus"], path + ".vcpus");
  else
    c.error(path + ".vcpus", h, "required field is missing");
  d.host.max_vcpus = static_cast<int>(d.host.vcpus.size()) + 1;
  if (h["maxVcpus"].IsDefined())
    if (auto v = c.integer(h["maxVcpus"], path + ".maxVcpus")) {
      if (*v < static_cast<int64_t>(d.host.vcpus.size()) || *v > 254)
        c.error(path + ".maxVcpus", h["maxVcpus"],
                "expected " + std::to_string(d.host.vcpus.size()) +
                    " (this host's vcpus) to 254, got " + std::to_string(*v));
      else
        d.host.max_vcpus = static_cast<int>(*v);
    }
  if (auto v = c.text(h, path, "rdmaDevice", false)) {
    // A verbs device name (IB_DEVICE_NAME_MAX is 64): letters, digits, '_', '-', '.'.
    const bool fine =
        !v->empty() && v->size() < 64 && std::all_of(v->begin(), v->end(), [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' ||
                 ch == '.';
        });
    if (fine)
      d.host.rdma_device = *v;
    else
      c.error(path + ".rdmaDevice", h["rdmaDevice"],
              "expected a verbs device name (up to 63 letters, digits, '_', '-', '.'), got '" + *v +
                  "'");
  }
  if (const YAML::Node m = h["memory"]; m.IsDefined() && !(m.IsScalar() && m.Scalar() == "even")) {
    if (!m.IsSequence()) {
      c.error(path + ".memory", m,
              "expected 'even' or a list of {start, size}, got " + Checker::kind_of(m));
    } else {
      d.even_memory = false;
      for (size_t i = 0; i < m.size(); ++i) {
        const std::string rp = path + ".memory[" + std::to_string(i) + "]";
        if (!c.map(m[i], rp)) continue;
        c.only_keys(m[i], rp, {"start", "size"});
        auto start =
            m[i]["start"].IsDefined() ? c.size(m[i]["start"], rp + ".start") : std::nullopt;
        auto size = m[i]["size"].IsDefined() ? c.size(m[i]["size"], rp + ".size") : std::nullopt;
        if (!m[i]["start"].IsDefined()) c.error(rp + ".start", m[i], "required field is missing");
        if (!m[i]["size"].IsDefined()) c.error(rp + ".size", m[i], "required field is missing");
        if (!start || !size) continue;
        if (*start % kHomeAlign || *size % kHomeAlign || *size == 0)
          c.error(rp, m[i], "start and size must be non-zero multiples of 2 MiB");
        d.host.home.push_back({*start, *size});
        d.range_paths.push_back(rp);
      }
    }
  }
  if (h["zeroPool"].IsDefined())
    if (auto v = c.size(h["zeroPool"], path + ".zeroPool")) d.host.zero_pool_bytes = *v;
  if (h["memoryBudget"].IsDefined()) {
    if (auto v = c.size(h["memoryBudget"], path + ".memoryBudget")) {
      if (*v < d.host.zero_pool_bytes + (2ull << 20))
        c.error(path + ".memoryBudget", h["memoryBudget"],
                "must hold the zero pool and at least 2 MiB of guest pages");
      else
        d.host.memory_budget_bytes = *v;
    }
  }
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
  });
}

}  // namespace

PodSpecResult parse_pod_spec(const std::string& yaml_text) {
  PodSpecResult out;
  Checker c;
  if (yaml_text.size() > kPodSpecMaxBytes) {
    out.errors.push_back("pod spec is " + std::to_string(yaml_text.size()) + " bytes; at most " +
                         std::to_string(kPodSpecMaxBytes));
    return out;
  }
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    out.errors.push_back("line " + std::to_string(e.mark.line + 1) + ", column " +
                         std::to_string(e.mark.column + 1) + ": not valid YAML: " + e.msg);
    return out;
  }
  PodSpec spec;
  if (!c.map(root, "(document)")) {
    out.errors = std::move(c.errors);
    return out;
  }
  c.only_keys(root, "", {"apiVersion", "kind", "metadata", "spec"});
  if (auto v = c.text(root, "", "apiVersion", true); v && *v != kPodApiVersion)
    c.error("apiVersion", root["apiVersion"],
            "expected '" + std::string(kPodApiVersion) + "', got '" + *v + "'");
  if (auto v = c.text(root, "", "kind", true); v && *v != "Pod")
    c.error("kind", root["kind"], "expected 'Pod', got '" + *v + "'");
  if (!root["metadata"].IsDefined()) {
    c.error("metadata", root, "required field is missing");
  } else if (root["metadata"].IsNull()) {
    c.error("metadata.name", root["metadata"], "required field is missing");
  } else if (c.map(root["metadata"], "metadata")) {
    c.only_keys(root["metadata"], "metadata", {"name", "labels"});
    if (auto v = c.text(root["metadata"], "metadata", "name", true)) {
      if (!valid_name(*v))
        c.error("metadata.name", root["metadata"]["name"],
                "expected lower-case letters, digits and '-', at most 63, got '" + *v + "'");
      spec.name = *v;
    }
  }
  const YAML::Node s = root["spec"];
  std::vector<HostDraft> drafts;
  if (!s.IsDefined()) {
    c.error("spec", root, "required field is missing");
  } else if (c.map(s, "spec")) {
    c.only_keys(s, "spec",
                {"guest", "memory", "vcpus", "hosts", "transport", "rdmaSealed", "secretFile",
                 "failureTimeout", "pageHold", "placement", "disks", "nets", "channel"});
    if (!s["guest"].IsDefined()) {
      c.error("spec.guest", s, "required field is missing");
    } else if (c.map(s["guest"], "spec.guest")) {
      c.only_keys(s["guest"], "spec.guest", {"kernel", "initrd", "cmdline"});
      if (auto v = c.text(s["guest"], "spec.guest", "kernel", true)) spec.kernel = *v;
      if (auto v = c.text(s["guest"], "spec.guest", "initrd", false)) spec.initrd = *v;
      if (auto v = c.text(s["guest"], "spec.guest", "cmdline", false)) spec.cmdline = *v;
    }
    if (!s["memory"].IsDefined())
      c.error("spec.memory", s, "required field is missing");
    else if (auto v = c.size(s["memory"], "spec.memory")) {
      if (*v == 0 || *v % kHomeAlign)
        c.error("spec.memory", s["memory"], "must be a non-zero multiple of 2 MiB");
      spec.memory = *v;
    }
    if (!s["vcpus"].IsDefined())
      c.error("spec.vcpus", s, "required field is missing");
    else if (auto v = c.integer(s["vcpus"], "spec.vcpus")) {
      if (*v < 1 || *v > 254)
        c.error("spec.vcpus", s["vcpus"], "expected 1 to 254");
      else
        spec.vcpus = static_cast<int>(*v);
    }
    if (auto v = c.text(s, "spec", "transport", false)) {
      if (*v == "rdma")
        spec.transport = PodTransport::kRdma;
      else if (*v != "tcp")
        c.error("spec.transport", s["transport"], "expected tcp or rdma, got '" + *v + "'");
    }
    if (auto v = c.text(s, "spec", "rdmaSealed", false)) {
      if (*v != "true" && *v != "false")
        c.error("spec.rdmaSealed", s["rdmaSealed"], "expected true or false, got '" + *v + "'");
      else if (spec.transport != PodTransport::kRdma)
        c.error("spec.rdmaSealed", s["rdmaSealed"], "applies to transport: rdma only");
      else
        spec.rdma_sealed = *v == "true";
    }
    if (auto v = c.text(s, "spec", "placement", false)) {
      if (*v == "auto")
        spec.placement = PodPlacement::kAuto;
      else if (*v == "static")
        spec.placement = PodPlacement::kStatic;
      else
        c.error("spec.placement", s["placement"], "expected static or auto, got '" + *v + "'");
    }
    if (auto v = c.text(s, "spec", "secretFile", true)) spec.secret_file = *v;
    // Durations in range, each kept only when valid (the default stays otherwise).
    auto duration = [&](const char* key, bool in_micros, uint64_t lo, uint64_t hi,
                        const char* range, uint64_t& out) {
      const YAML::Node n = s[key];
      if (!n.IsDefined()) return;
      const std::string path = std::string("spec.") + key;
      auto v = in_micros ? c.micros(n, path) : c.millis(n, path);
      if (!v) return;
      if (*v < lo || *v > hi)
        c.error(path, n, std::string("expected ") + range);
      else
        out = *v;
    };
    duration("failureTimeout", false, 500, 60'000, "500ms to 60s", spec.failure_timeout_ms);
    duration("pageHold", true, 20, 1'000'000, "20us to 1s", spec.page_hold_us);
    // Devices on the first host, in `shoal run`'s order (docs/devices.md): the disks, the
    // nets, the channel, one virtio-mmio slot each.
    auto device_list = [&](const char* key, const char* form, auto parse, auto& out) {
      const YAML::Node d = s[key];
      if (!d.IsDefined()) return;
      const std::string field = std::string("spec.") + key;
      if (!d.IsSequence() || d.size() > platform::kVirtioMmioSlots) {
        c.error(field, d,
                "expected a list of at most " + std::to_string(platform::kVirtioMmioSlots) + " " +
                    form + ", got " + Checker::kind_of(d));
        return;
      }
      for (size_t i = 0; i < d.size(); ++i) {
        const std::string path = field + "[" + std::to_string(i) + "]";
        if (!d[i].IsScalar()) {
          c.error(path, d[i], std::string("expected ") + form + ", got " + Checker::kind_of(d[i]));
        } else if (auto parsed = parse(d[i].as<std::string>()); !parsed) {
          c.error(path, d[i], parsed.error().message());
        } else {
          out.push_back(*parsed);
        }
      }
    };
    device_list("disks", "PATH[,ro]", parse_disk_option, spec.disks);
    device_list("nets", "tap=NAME[,mac=MAC]", parse_net_option, spec.nets);
    if (auto v = c.text(s, "spec", "channel", false)) {
      // A Unix socket's path: sun_path holds 107 bytes and a NUL.
      if (v->empty() || v->size() > 107)
        c.error("spec.channel", s["channel"],
                "expected a socket path of 1 to 107 bytes, got " + std::to_string(v->size()));
      else
        spec.channel = *v;
    }
    if (spec.virtio().count() > platform::kVirtioMmioSlots)
      c.error("spec", s,
              std::to_string(spec.disks.size()) + " disks, " + std::to_string(spec.nets.size()) +
                  " nets" + (spec.channel.empty() ? "" : " and a channel") + ": at most " +
                  std::to_string(platform::kVirtioMmioSlots) + " virtio devices");
    const YAML::Node hosts = s["hosts"];
    if (!hosts.IsDefined()) {
      c.error("spec.hosts", s, "required field is missing");
    } else if (!hosts.IsSequence() || hosts.size() == 0) {
      c.error("spec.hosts", hosts,
              "expected a non-empty list of hosts, got " + Checker::kind_of(hosts));
    } else if (hosts.size() > kMaxPodHosts) {
      c.error("spec.hosts", hosts,
              std::to_string(hosts.size()) + " hosts; a pod has at most " +
                  std::to_string(kMaxPodHosts));
    } else {
      drafts.resize(hosts.size());
      for (size_t i = 0; i < hosts.size(); ++i)
        parse_host(c, hosts[i], "spec.hosts[" + std::to_string(i) + "]", drafts[i]);
    }
  }

  // Cross-field checks: names, addresses, vCPUs, memory homes.
  std::map<std::string, size_t> names, addresses;
  std::map<int, size_t> vcpu_owner;
  for (size_t i = 0; i < drafts.size(); ++i) {
    const std::string path = "spec.hosts[" + std::to_string(i) + "]";
    const PodHost& h = drafts[i].host;
    const YAML::Node node = s["hosts"][i];
    if (!h.name.empty() && !names.emplace(h.name, i).second)
      c.error(path + ".name", node["name"],
              "'" + h.name + "' is also spec.hosts[" + std::to_string(names[h.name]) + "]");
    if (spec.transport == PodTransport::kRdma) {
      in_addr a{};
      if (h.port != 0 && inet_pton(AF_INET, h.host.c_str(), &a) != 1)
        c.error(path + ".address", node["address"],
                "transport rdma needs an IPv4 address (its RoCE GID), got '" + h.host + "'");
    } else if (!h.rdma_device.empty()) {
      c.error(path + ".rdmaDevice", node["rdmaDevice"], "applies to transport: rdma only");
    }
    const std::string addr = h.host + ":" + std::to_string(h.port);
    if (h.port != 0 && !addresses.emplace(addr, i).second)
      c.error(path + ".address", node["address"],
              addr + " is also spec.hosts[" + std::to_string(addresses[addr]) + "]");
    for (int v : h.vcpus) {
      if (spec.vcpus > 0 && (v < 0 || v >= spec.vcpus)) {
        c.error(path + ".vcpus", node["vcpus"],
                "vCPU " + std::to_string(v) + " is outside 0.." + std::to_string(spec.vcpus - 1));
      } else if (auto [it, fresh] = vcpu_owner.emplace(v, i); !fresh) {
        c.error(path + ".vcpus", node["vcpus"],
                "vCPU " + std::to_string(v) + " is also on spec.hosts[" +
                    std::to_string(it->second) + "]");
      }
    }
  }
  if (spec.vcpus > 0 && !drafts.empty())
    for (int v = 0; v < spec.vcpus; ++v)
      if (!vcpu_owner.count(v))
        c.error("spec.hosts", s["hosts"], "vCPU " + std::to_string(v) + " is on no host");

  const bool any_explicit =
      std::any_of(drafts.begin(), drafts.end(), [](const HostDraft& d) { return !d.even_memory; });
  const bool any_even =
      std::any_of(drafts.begin(), drafts.end(), [](const HostDraft& d) { return d.even_memory; });
  if (any_explicit && any_even) {
    for (size_t i = 0; i < drafts.size(); ++i)
      if (drafts[i].even_memory)
        c.error("spec.hosts[" + std::to_string(i) + "].memory", s["hosts"][i],
                "every host needs explicit ranges once one host has them");
  } else if (any_explicit && spec.memory > 0) {
    struct Owned {
      MemoryRange r;
      std::string path;
    };
    std::vector<Owned> all;
    for (const auto& d : drafts)
      for (size_t k = 0; k < d.host.home.size(); ++k)
        all.push_back({d.host.home[k], d.range_paths[k]});
    std::sort(all.begin(), all.end(),
              [](const Owned& a, const Owned& b) { return a.r.start < b.r.start; });
    uint64_t covered = 0;
    for (size_t k = 0; k < all.size(); ++k) {
      const auto& [r, path] = all[k];
      if (r.start + r.size > spec.memory)
        c.error(path, YAML::Node(),
                "ends at " + format_size(r.start + r.size) + ", past spec.memory " +
                    format_size(spec.memory));
      if (k > 0 && r.start < all[k - 1].r.start + all[k - 1].r.size)
        c.error(path, YAML::Node(), "overlaps " + all[k - 1].path);
      if (r.start > covered)
        c.error("spec.hosts", YAML::Node(),
                "guest memory [" + format_size(covered) + ", " + format_size(r.start) +
                    ") has no home host");
      covered = std::max(covered, r.start + r.size);
    }
    if (covered < spec.memory)
      c.error("spec.hosts", YAML::Node(),
              "guest memory [" + format_size(covered) + ", " + format_size(spec.memory) +
                  ") has no home host");
  } else if (spec.memory > 0 && !drafts.empty()) {
    // Even split in whole 2 MiB pieces; the last host takes the remainder.
    const uint64_t pieces = spec.memory / kHomeAlign;
    const uint64_t n = drafts.size();
    if (pieces < n)
      c.error("spec.memory", s["memory"],
              "too small to split over " + std::to_string(n) + " hosts");
    uint64_t start = 0;
    for (uint64_t i = 0; i < n && pieces >= n; ++i) {
      const uint64_t size =
          (i + 1 == n ? pieces - (pieces / n) * (n - 1) : pieces / n) * kHomeAlign;
      drafts[i].host.home = {{start, size}};
      start += size;
    }
  }

  out.errors = std::move(c.errors);
  if (!out.errors.empty()) return out;
  for (auto& d : drafts) {
    std::sort(d.host.vcpus.begin(), d.host.vcpus.end());
    spec.hosts.push_back(std::move(d.host));
  }
  out.spec = std::move(spec);
  return out;
}

PodSpecResult load_pod_spec(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {std::nullopt, {path + ": cannot read the pod spec"}};
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (text.size() > kPodSpecMaxBytes)
    return {std::nullopt,
            {path + ": " + std::to_string(text.size()) + " bytes; a pod spec is at most " +
             std::to_string(kPodSpecMaxBytes)}};
  auto r = parse_pod_spec(text);
  for (auto& e : r.errors) e = path + ": " + e;
  return r;
}

}  // namespace shoal

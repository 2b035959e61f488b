#include "pod/pod_snapshot_state.hpp"

#include <algorithm>
#include <string>

#include "machine/machine_state.hpp"
#include "memory/coherence.hpp"
#include "memory/snapshot_format.hpp"
#include "shoal/wire_bytes.hpp"

namespace shoal {

namespace {

constexpr uint32_t kMagic = 0x4d505353;  // "SSPM"
constexpr size_t kHomeRecordBytes = 16;

Error bad(const std::string& what) {
  return Error("pod member state: " + what);
}

Result<std::vector<uint8_t>> get_blob(WireReader& r, size_t max, const std::string& what) {
  std::vector<uint8_t> b;
  std::string why;
  if (!r.get_blob(b, max, why)) return bad(what + ": " + why);
  return b;
}

void put_pages(WireWriter& w, const std::vector<uint64_t>& pages) {
  w.put(static_cast<uint64_t>(pages.size()));
  for (uint64_t p : pages) w.put(p);
}

// Page lists: sorted, no repeats, inside the largest guest a snapshot may hold; the count is
// checked against the bytes left before anything is allocated.
Result<std::vector<uint64_t>> get_pages(WireReader& r, size_t left, const std::string& what) {
  uint64_t n = 0;
  if (!r.get(n)) return bad(what + ": truncated");
  if (n > left / sizeof(uint64_t))
    return bad(what + ": " + std::to_string(n) + " pages, truncated");
  std::vector<uint64_t> pages(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (!r.get(pages[i])) return bad(what + ": truncated");
    if (pages[i] >= kMaxSnapshotRamBytes / kSnapshotPageBytes ||
        (i > 0 && pages[i] <= pages[i - 1]))
      return bad(what + ": page " + std::to_string(i) + " out of order or range");
  }
  return pages;
}

}  // namespace

std::vector<uint8_t> encode_pod_member_state(const PodMemberState& s) {
  WireWriter w;
  w.put(kMagic).put(kPodMemberStateVersion).put(s.host).put(s.hosts).put(s.snapshot_id);
  w.put_blob(std::vector<uint8_t>(s.pod_name.begin(), s.pod_name.end()));
  w.put_blob(s.boot_plan);
  w.put(static_cast<uint32_t>(s.host_of_vcpu.size()));
  for (uint16_t h : s.host_of_vcpu) w.put(h);
  w.put(s.location_version);
  w.put(static_cast<uint32_t>(s.slot_gpas.size()));
  for (uint64_t g : s.slot_gpas) w.put(g);
  w.put_blob(encode_machine_state(s.machine));
  put_pages(w, s.memory.shared);
  put_pages(w, s.memory.home_copies);
  w.put(static_cast<uint64_t>(s.memory.homes.size()));
  for (const HomeDirectory::Record& h : s.memory.homes)
    w.put(h.page)
        .put(static_cast<uint8_t>(h.state))
        .put(static_cast<uint8_t>(h.self_copy ? 1 : 0))
        .put(h.owner)
        .put(h.sharers);
  return w.take();
}

Result<PodMemberState> decode_pod_member_state(const std::vector<uint8_t>& bytes) {
  WireReader r(bytes);
  uint32_t magic = 0, version = 0;
  if (!r.get(magic) || magic != kMagic) return bad("not a shoal pod member's state");
  // Version 1 is version 2 without the snapshot id.
  if (!r.get(version) || version < 1 || version > kPodMemberStateVersion)
    return bad("version " + std::to_string(version) + ", this build reads 1.." +
               std::to_string(kPodMemberStateVersion));
  PodMemberState s;
  if (!r.get(s.host) || !r.get(s.hosts)) return bad("hosts: truncated");
  if (version >= 2 && !r.get(s.snapshot_id)) return bad("snapshot id: truncated");
  if (s.hosts == 0 || s.hosts > kMaxPodHosts || s.host >= s.hosts)
    return bad("host " + std::to_string(s.host) + " of " + std::to_string(s.hosts) + " (at most " +
               std::to_string(kMaxPodHosts) + ")");
  auto name = get_blob(r, kMaxPodNameBytes, "pod name");
  if (!name) return name.error();
  s.pod_name.assign(name->begin(), name->end());
  auto plan = get_blob(r, kMaxBootPlanBytes, "boot plan");
  if (!plan) return plan.error();
  s.boot_plan = std::move(*plan);
  uint32_t n = 0;
  if (!r.get(n)) return bad("location table: truncated");
  if (n == 0 || n > kMaxSnapshotVcpus)
    return bad("location table: " + std::to_string(n) + " vCPUs, expected 1.." +
               std::to_string(kMaxSnapshotVcpus));
  s.host_of_vcpu.resize(n);
  for (uint32_t v = 0; v < n; ++v) {
    if (!r.get(s.host_of_vcpu[v])) return bad("location table: truncated");
    if (s.host_of_vcpu[v] >= s.hosts)
      return bad("location table: vcpu " + std::to_string(v) + " on host " +
                 std::to_string(s.host_of_vcpu[v]) + " of " + std::to_string(s.hosts));
  }
  if (!r.get(s.location_version)) return bad("location version: truncated");
  if (!r.get(n)) return bad("slots: truncated");
  if (n > kMaxPodSlots)
    return bad("slots: " + std::to_string(n) + ", at most " + std::to_string(kMaxPodSlots));
  s.slot_gpas.resize(n);
  for (uint64_t& g : s.slot_gpas)
    if (!r.get(g)) return bad("slots: truncated");
  auto machine_bytes = get_blob(r, kMaxSnapshotStateBytes, "machine");
  if (!machine_bytes) return machine_bytes.error();
  auto machine = decode_machine_state(*machine_bytes);
  if (!machine) return machine.error().context("pod member state");
  s.machine = std::move(*machine);
  const auto& vcpus = s.machine.vcpus;
  for (size_t i = 0; i < vcpus.size(); ++i) {
    const std::string what = "vcpu " + std::to_string(i);
    const uint32_t id = vcpus[i].id;
    if (id >= s.host_of_vcpu.size() || s.host_of_vcpu[id] != s.host)
      return bad(what + ": vcpu " + std::to_string(id) + " does not run on this host");
    for (size_t j = 0; j < i; ++j)
      if (vcpus[j].id == id) return bad(what + ": vcpu " + std::to_string(id) + " twice");
  }
  const auto here =
      static_cast<size_t>(std::count(s.host_of_vcpu.begin(), s.host_of_vcpu.end(), s.host));
  if (vcpus.size() != here)
    return bad("vcpus: " + std::to_string(vcpus.size()) + " saved, the location table puts " +
               std::to_string(here) + " on this host");
  auto shared = get_pages(r, bytes.size(), "shared pages");
  if (!shared) return shared.error();
  s.memory.shared = std::move(*shared);
  auto copies = get_pages(r, bytes.size(), "home copies");
  if (!copies) return copies.error();
  s.memory.home_copies = std::move(*copies);
  uint64_t homes = 0;
  if (!r.get(homes)) return bad("home entries: truncated");
  if (homes > bytes.size() / kHomeRecordBytes)
    return bad("home entries: " + std::to_string(homes) + ", truncated");
  s.memory.homes.resize(homes);
  for (uint64_t i = 0; i < homes; ++i) {
    HomeDirectory::Record& h = s.memory.homes[i];
    uint8_t state = 0, self_copy = 0;
    if (!r.get(h.page) || !r.get(state) || !r.get(self_copy) || !r.get(h.owner) ||
        !r.get(h.sharers))
      return bad("home entry " + std::to_string(i) + ": truncated");
    if (state != static_cast<uint8_t>(HomeDirectory::State::kShared) &&
        state != static_cast<uint8_t>(HomeDirectory::State::kExclusive))
      return bad("home entry " + std::to_string(i) + ": state " + std::to_string(state));
    if (self_copy > 1)
      return bad("home entry " + std::to_string(i) + ": self copy " + std::to_string(self_copy));
    if (i > 0 && h.page <= s.memory.homes[i - 1].page)
      return bad("home entry " + std::to_string(i) + ": out of order");
    h.state = static_cast<HomeDirectory::State>(state);
    h.self_copy = self_copy != 0;
  }
  if (!r.rest().empty()) return bad("trailing bytes");
  return s;
}

}  // namespace shoal

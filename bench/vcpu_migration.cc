// What moving a vCPU costs (docs/vcpu-migration.md), in one run:
// - on this host, with real KVM: saving a vCPU's whole state (VcpuState: registers, FPU/XSAVE,
//   MSRs, LAPIC, events, ...), its encoded size (what travels in kVcpuArrive), and restoring it
//   into a vCPU of a second VM; the two ends of a move without the network;
// - a whole move in a 2-host pod over TCP between network namespaces, as host 0 times it:
//   its order to the vCPU's host, the pause, the save, the state on the wire, the restore and
//   resume on the other host, and the announcement back (`shoal pod move` prints it). The
//   first arrival on a host restores into its shadow's fd for the first time; it is reported
//   apart. And the vCPU's pause -> resume (the measure): from the source's save
//   beginning to the destination running it, from the nodes' logs (netns hosts share one
//   monotonic clock). Twice: with both vCPUs counting on shared pages, and with vCPU 0 alone
//   computing (a pod of one vCPU, so this 2-core machine has a core for shoal's threads).
//   Needs root (ip netns);
// - a cross-host IPI (docs/interrupts.md): the test guest's `ipi N` with its two vCPUs on two
//   netns hosts, each IPI sent once the previous one was counted, against the same on one
//   host (KVM's own delivery): (time of `ipi N` - time of `ipi 0`) / N, medians of 3; and the
//   sink's part alone, on this host: KVM_SIGNAL_MSI to a shadow until its report arrives.
// - the test guest's `wander 500` on 2 hosts x 2 vCPUs with `placement: static` and `auto`:
//   seconds from `pod up` to its end, and the page requests (remote faults) of both hosts.
//   vcpu_migration [--json] [MOVES]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "arch/interrupt_sink.hpp"
#include "kvm/kvm.hpp"
#include "kvm/vcpu_state.hpp"
#include "machine/machine_core.hpp"
#include "support/process.hpp"
#include "vcpu/vcpu_thread.hpp"

namespace {

using shoal::test::ProcessResult;
using shoal::test::run_process;

double now_us() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Local {
  std::vector<double> save_us, restore_us;
  size_t state_bytes = 0;
  std::string error;
};

// Two VMs on this host, one vCPU each: save on the first, restore on the second.
Local local_round_trips(int n) {
  Local out;
  auto kvm = shoal::Kvm::open();
  if (!kvm) return {{}, {}, 0, kvm.error().message()};
  auto msrs = kvm->msr_index_list();
  if (!msrs) return {{}, {}, 0, msrs.error().message()};
  std::vector<shoal::Vm> vms;
  std::vector<std::unique_ptr<shoal::KvmVcpuBackend>> vcpus;
  for (int i = 0; i < 2; ++i) {
    auto vm = shoal::Vm::create(*kvm);
    if (!vm) return {{}, {}, 0, vm.error().message()};
    if (auto s = vm->create_platform(); !s.ok()) return {{}, {}, 0, s.error().message()};
    auto fd = vm->create_vcpu(0, kvm->vcpu_mmap_size());
    if (!fd) return {{}, {}, 0, fd.error().message()};
    vcpus.push_back(
        std::make_unique<shoal::KvmVcpuBackend>(std::move(*fd), kvm->vcpu_mmap_size(), *msrs));
    vms.push_back(std::move(*vm));
  }
  for (int i = 0; i < n; ++i) {
    const double t0 = now_us();
    auto state = vcpus[0]->save_state();
    const double t1 = now_us();
    if (!state) return {{}, {}, 0, state.error().message()};
    const std::vector<uint8_t> bytes = shoal::encode_vcpu_state(*state);
    out.state_bytes = bytes.size();
    auto decoded = shoal::decode_vcpu_state(bytes);
    if (!decoded) return {{}, {}, 0, decoded.error().message()};
    const double t2 = now_us();
    if (auto s = vcpus[1]->restore_state(*decoded); !s.ok())
      return {{}, {}, 0, s.error().message()};
    const double t3 = now_us();
    out.save_us.push_back(t1 - t0);
    out.restore_us.push_back(t3 - t2);
  }
  return out;
}

struct Pod {
  std::vector<double> first_ms, again_ms;  // onto a host that never ran it / back again
  // Each move's pause -> resume: from the source's save beginning (the vCPU stopped) to the
  // destination running it, from the hosts' logs; netns hosts share one monotonic clock.
  std::vector<double> away_us;
  std::string error;
};

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = "/tmp/shoal-vcpu-migration-" + std::to_string(getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

// A 2-host pod with `each` vCPUs on each host (0: one vCPU in all, on h0), running
// `cmdline`; `secret` is the secret file's path.
std::string two_host_spec(const std::string& cmdline, const std::string& secret, int each = 1,
                          const std::string& placement = "static") {
  std::string spec =
      "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: vmove}\nspec:\n"
      "  guest: {kernel: " SHOAL_TEST_GUEST ", cmdline: \"" +
      cmdline + "\"}\n  memory: 256M\n  vcpus: " + std::to_string(each == 0 ? 1 : 2 * each) +
      "\n  transport: tcp\n  placement: " + placement + "\n  secretFile: " + secret +
      "\n  hosts:\n";
  for (int i = 0; i < 2; ++i) {
    const std::string first = std::to_string(i * each), last = std::to_string(i * each + each - 1);
    const std::string vcpus =
        each == 0 ? (i == 0 ? "0" : "") : first + (each > 1 ? "-" + last : "");
    spec += "    - {name: h" + std::to_string(i) + ", address: \"127.77.0." +
            std::to_string(i + 1) + ":7100\", vcpus: \"" + vcpus +
            "\", memory: even, zeroPool: 8M}\n";
  }
  return write_file("pod.yaml", spec);
}

ProcessResult in_two_hosts(const std::string& secret, const std::string& script,
                           const std::string& logs = "") {
  return run_process(
      {"/usr/bin/env", "SHOAL_BIN=" SHOAL_BINARY, "SHOAL_CLUSTER_LOGS=" + logs,
       SHOAL_SOURCE_DIR "/scripts/netns-cluster", "2", secret, "--", "/bin/bash", "-c", script},
      std::chrono::seconds(300));
}

// The node log's move times by move: "move v12 paused at 123 ns" -> {12: 123} for `what`.
std::map<uint64_t, uint64_t> logged_ns(const std::string& log, const std::string& what) {
  std::map<uint64_t, uint64_t> out;
  std::ifstream in(log);
  const std::string mark = "; move v";
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find(mark);
    if (at == std::string::npos || line.find(" " + what + " at ", at) == std::string::npos)
      continue;
    uint64_t version = 0, ns = 0;
    const std::string format = "; move v%" SCNu64 " " + what + " at %" SCNu64 " ns";
    if (std::sscanf(line.c_str() + at, format.c_str(), &version, &ns) == 2) out[version] = ns;
  }
  return out;
}

// vCPU 0 goes h0 -> h1 -> h0 ... `moves` times. `busy`: both vCPUs count on shared pages
// (the source's vCPU often waits for one when the move comes, and the two vCPU threads take
// both of this machine's cores); otherwise vCPU 0 alone computes on its own pages.
Pod pod_moves(int moves, bool busy) {
  Pod out;
  if (geteuid() != 0) return {{}, {}, {}, "skipped: needs root (ip netns)"};
  const std::string secret = write_file("secret", "vcpu-migration-bench-secret-0123456789\n");
  const std::string spec_path = busy ? two_host_spec("counter-total 4000000000", secret)
                                     : two_host_spec("compute 400000000000", secret, 0);
  const std::string shoal = SHOAL_BINARY;
  const std::string script =
      shoal + " pod up " + spec_path + " >/dev/null 2>&1 & up=$!; for i in $(seq 100); do " +
      shoal + " pod status " + spec_path + " 2>/dev/null | grep -q 'h0 (1/" + (busy ? "2" : "1") +
      "): running' && break; sleep 0.1; done; "
      "for i in $(seq " +
      std::to_string(moves) + "); do " + shoal + " pod move " + spec_path +
      " --vcpu 0 --to h$((i % 2)); done; " + shoal + " pod down " + spec_path +
      " >/dev/null; wait $up";
  char logs[] = "/tmp/shoal-vcpu-migration-logs-XXXXXX";
  if (mkdtemp(logs) == nullptr) return {{}, {}, {}, "mkdtemp failed"};
  ProcessResult r = in_two_hosts(secret, script, logs);
  unlink(secret.c_str());
  unlink(spec_path.c_str());
  const std::string dir = logs;
  std::map<uint64_t, uint64_t> paused, resumed;
  for (const char* host : {"/h0.log", "/h1.log"}) {
    paused.merge(logged_ns(dir + host, "paused"));
    resumed.merge(logged_ns(dir + host, "resumed"));
  }
  for (const auto& [version, at] : paused)
    if (auto it = resumed.find(version); it != resumed.end() && it->second > at)
      out.away_us.push_back(static_cast<double>(it->second - at) / 1e3);
  std::filesystem::remove_all(dir);
  std::istringstream in(r.out);
  std::string line;
  int seen = 0;
  while (std::getline(in, line)) {
    const auto at = line.find(" in ");
    if (line.rfind("vcpu 0 moved from", 0) != 0 || at == std::string::npos) continue;
    const double ms = std::atof(line.c_str() + at + 4);
    // The very first move is the first restore into h1's shadow fd of the vCPU.
    (seen++ == 0 ? out.first_ms : out.again_ms).push_back(ms);
  }
  if (seen == moves && static_cast<int>(out.away_us.size()) != moves)
    out.error = "the node logs hold " + std::to_string(out.away_us.size()) + " of " +
                std::to_string(moves) + " moves' pause and resume times";
  if (seen != moves)
    out.error = std::to_string(seen) + " of " + std::to_string(moves) +
                " moves reported: " + r.err.substr(0, 400);
  return out;
}

struct Ipis {
  double one_host_us = -1, pod_us = -1;
  std::vector<double> sink_us;  // KVM_SIGNAL_MSI to a shadow -> its report
  std::string error;
};

// A VM whose vCPU 1 is a shadow in the interrupt sink: interrupts sent to it one at a time.
std::string sink_latency(int n, std::vector<double>& out) {
  auto kvm = shoal::Kvm::open();
  if (!kvm) return kvm.error().message();
  auto core = shoal::MachineCore::create(std::move(*kvm), 64ull << 20, {.interrupt_sink = true});
  if (!core) return core.error().message();
  std::atomic<int> reports{0};
  (*core)->set_interrupt_sink([&](int, shoal::ApicDelivery, uint8_t) { reports.fetch_add(1); });
  if (auto s = (*core)->create_vcpus({1}, 2, shoal::BootPlan{}, nullptr); !s.ok())
    return s.error().message();
  (*core)->command_vcpus(shoal::VcpuCommand::kSink);
  (*core)->start_vcpus();
  // vCPU 1 is an AP nobody started: its shadow waits for the INIT and SIPI another host's BSP
  // would send (it reports both) before it enters the sink proper.
  for (auto [delivery, vector] : {std::pair{shoal::ApicDelivery::kInit, uint8_t{0}},
                                  std::pair{shoal::ApicDelivery::kStartup, uint8_t{0x10}}})
    if (auto r = (*core)->vm().signal_msi(1, vector, delivery); !r) return r.error().message();
  std::string error;
  for (int i = 0; i < n + 10 && error.empty(); ++i) {
    const int before = reports.load();
    const double t0 = now_us();
    auto taken = (*core)->vm().signal_msi(1, 0x40, shoal::ApicDelivery::kFixed);
    if (!taken) error = taken.error().message();
    if (!taken || !*taken) {  // the sink's start-up has not enabled its LAPIC yet
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    while (reports.load() == before && now_us() - t0 < 1e6) std::this_thread::yield();
    if (reports.load() == before) error = "the sink did not report within 1 s";
    if (i >= 10) out.push_back(now_us() - t0);  // the first few warm up
  }
  (*core)->stop_vcpus();
  if (error.empty() && out.empty()) error = "the sink took no interrupt in ~1 s";
  return error;
}

// Seconds `argv` took, the median of 3 runs; negative if one failed or `expect` is missing.
double median_seconds(const std::vector<std::string>& argv, const std::string& expect) {
  std::vector<double> t;
  for (int i = 0; i < 3; ++i) {
    ProcessResult r = run_process(argv, std::chrono::seconds(300));
    if (r.exit_code != 0 || r.out.find(expect) == std::string::npos) return -1;
    t.push_back(r.seconds);
  }
  return pct(t, 0.5);
}

Ipis ipi_costs(int n) {
  Ipis out;
  auto one_host = [&](int count) {
    return median_seconds({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", "64M",
                           "--vcpus", "2", "--cmdline", "ipi " + std::to_string(count)},
                          "lost=0");
  };
  const double base = one_host(0), full = one_host(n);
  if (base < 0 || full < 0) return {-1, -1, {}, "one host: ipi did not finish with lost=0"};
  out.one_host_us = (full - base) * 1e6 / n;
  if (geteuid() != 0) return {out.one_host_us, -1, {}, "skipped: needs root (ip netns)"};
  const std::string secret = write_file("secret", "vcpu-migration-bench-secret-0123456789\n");
  auto pod = [&](int count) {
    const std::string spec = two_host_spec("ipi " + std::to_string(count), secret);
    const double s = median_seconds(
        {"/usr/bin/env", "SHOAL_BIN=" SHOAL_BINARY, SHOAL_SOURCE_DIR "/scripts/netns-cluster", "2",
         secret, "--", SHOAL_BINARY, "pod", "up", spec},
        "lost=0");
    unlink(spec.c_str());
    return s;
  };
  const double pod_base = pod(0), pod_full = pod(n);
  unlink(secret.c_str());
  if (pod_base < 0 || pod_full < 0) return {out.one_host_us, -1, {}, "pod: ipi did not end lost=0"};
  out.pod_us = (pod_full - pod_base) * 1e6 / n;
  out.error = sink_latency(1000, out.sink_us);
  return out;
}

struct Wander {
  double seconds = -1;
  uint64_t remote_faults = 0;  // page requests both hosts sent
  std::string placement;       // the location table at the end
};

// The test guest's `wander ROUNDS` on 2 hosts x 2 vCPUs (each pair split across the hosts).
Wander wander(int rounds, const std::string& placement, std::string& error) {
  Wander out;
  if (geteuid() != 0) {
    error = "skipped: needs root (ip netns)";
    return out;
  }
  const std::string secret = write_file("secret", "vcpu-migration-bench-secret-0123456789\n");
  const std::string spec = two_host_spec("wander " + std::to_string(rounds), secret, 2, placement);
  const std::string shoal = SHOAL_BINARY;
  ProcessResult r = in_two_hosts(secret, "start=$EPOCHREALTIME; " + shoal + " pod up " + spec +
                                             " > /dev/null 2>&1; echo up-exit=$? start=$start "
                                             "end=$EPOCHREALTIME; " +
                                             shoal + " pod status " + spec);
  unlink(secret.c_str());
  unlink(spec.c_str());
  if (r.out.find("up-exit=0") == std::string::npos) {
    error = "wander (" + placement + ") failed: " + r.out.substr(0, 400) + r.err.substr(0, 400);
    return out;
  }
  out.seconds = std::atof(r.out.c_str() + r.out.find("end=") + 4) -
                std::atof(r.out.c_str() + r.out.find("start=") + 6);
  for (size_t at = r.out.find("requests "); at != std::string::npos;
       at = r.out.find("requests ", at + 1))
    out.remote_faults += std::strtoull(r.out.c_str() + at + 9, nullptr, 10);
  const size_t p = r.out.find("placement ");
  if (p != std::string::npos) out.placement = r.out.substr(p + 10, r.out.find('\n', p) - p - 10);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int moves = 100;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json")
      json = true;
    else
      moves = std::max(2, std::atoi(argv[i]));
  }
  const Local local = local_round_trips(200);
  const Pod pod = pod_moves(moves, true);
  const Pod lone = pod_moves(moves, false);
  const int ipi_n = 2000;
  const Ipis ipis = ipi_costs(ipi_n);
  const int wander_rounds = 500;
  std::string wander_error;
  const Wander fixed = wander(wander_rounds, "static", wander_error);
  const Wander moving = wander(wander_rounds, "auto", wander_error);
  if (json) {
    std::printf(
        "{\"bench\":\"vcpu_migration\",\"state_bytes\":%zu,\"save_us\":{\"p50\":%.1f,\"p99\":%.1f},"
        "\"restore_us\":{\"p50\":%.1f,\"p99\":%.1f},\"moves\":%zu,\"first_move_ms\":%.2f,"
        "\"move_ms\":{\"p50\":%.2f,\"p99\":%.2f},\"pause_resume_us\":{\"p50\":%.1f,"
        "\"p99\":%.1f},\"lone_vcpu\":{\"move_ms\":{\"p50\":%.2f,\"p99\":%.2f},"
        "\"pause_resume_us\":{\"p50\":%.1f,\"p99\":%.1f}},\"ipi_us\":{\"one_host\":%.1f,"
        "\"two_hosts\":%.1f,\"sink\":{\"p50\":%.1f,\"p99\":%.1f}},\"wander\":{\"rounds\":%d,"
        "\"static\":{\"seconds\":%.2f,\"remote_faults\":%llu},\"auto\":{\"seconds\":%.2f,"
        "\"remote_faults\":%llu}}}\n",
        local.state_bytes, pct(local.save_us, 0.5), pct(local.save_us, 0.99),
        pct(local.restore_us, 0.5), pct(local.restore_us, 0.99), pod.again_ms.size() + 1,
        pod.first_ms.empty() ? -1.0 : pod.first_ms[0], pct(pod.again_ms, 0.5),
        pct(pod.again_ms, 0.99), pct(pod.away_us, 0.5), pct(pod.away_us, 0.99),
        pct(lone.again_ms, 0.5), pct(lone.again_ms, 0.99), pct(lone.away_us, 0.5),
        pct(lone.away_us, 0.99), ipis.one_host_us, ipis.pod_us, pct(ipis.sink_us, 0.5),
        pct(ipis.sink_us, 0.99), wander_rounds, fixed.seconds,
        static_cast<unsigned long long>(fixed.remote_faults), moving.seconds,
        static_cast<unsigned long long>(moving.remote_faults));
  } else {
    std::printf("vCPU state on this host (real KVM, 200 round trips between two VMs)\n");
    std::printf("  encoded state:  %zu bytes\n", local.state_bytes);
    std::printf("  save:    p50 %7.1f us  p99 %7.1f us\n", pct(local.save_us, 0.5),
                pct(local.save_us, 0.99));
    std::printf("  restore: p50 %7.1f us  p99 %7.1f us\n", pct(local.restore_us, 0.5),
                pct(local.restore_us, 0.99));
    std::printf(
        "a move, 2 netns hosts over TCP (%d moves): whole as host 0 times it (order to "
        "announcement); pause -> resume from the hosts' logs (one clock)\n",
        moves);
    for (const auto& [what, p] : {std::pair{"both vCPUs counting on shared pages", &pod},
                                  std::pair{"vCPU 0 alone, computing (a core to spare)", &lone}}) {
      std::printf("  %s:\n", what);
      if (!p->first_ms.empty())
        std::printf("    first (into h1's shadow fd): %.2f ms\n", p->first_ms[0]);
      std::printf("    whole:          p50 %.2f ms  p99 %.2f ms\n", pct(p->again_ms, 0.5),
                  pct(p->again_ms, 0.99));
      std::printf("    pause -> resume: p50 %.0f us  p99 %.0f us\n", pct(p->away_us, 0.5),
                  pct(p->away_us, 0.99));
    }
    std::printf("an IPI and its count seen by the sender (`ipi %d`, 2 vCPUs, medians of 3)\n",
                ipi_n);
    std::printf("  one host (KVM delivers): %8.1f us\n", ipis.one_host_us);
    std::printf(
        "  two netns hosts (sink, kInterrupt, KVM_SIGNAL_MSI; the count's page moves "
        "twice): %8.1f us (%.1fx)\n",
        ipis.pod_us, ipis.one_host_us > 0 ? ipis.pod_us / ipis.one_host_us : -1.0);
    std::printf(
        "  the sink's part (KVM_SIGNAL_MSI to a shadow -> its report, 1000): p50 %.1f us  "
        "p99 %.1f us\n",
        pct(ipis.sink_us, 0.5), pct(ipis.sink_us, 0.99));
    std::printf("`wander %d`, 2 hosts x 2 vCPUs, each pair split across the hosts\n",
                wander_rounds);
    std::printf("  placement static: %7.2f s, %8llu remote faults; ends %s\n", fixed.seconds,
                static_cast<unsigned long long>(fixed.remote_faults), fixed.placement.c_str());
    std::printf("  placement auto:   %7.2f s, %8llu remote faults; ends %s\n", moving.seconds,
                static_cast<unsigned long long>(moving.remote_faults), moving.placement.c_str());
    if (moving.seconds > 0 && moving.remote_faults > 0)
      std::printf(
          "  auto vs static: %.1fx faster, %.1fx fewer remote faults\n",
          fixed.seconds / moving.seconds,
          static_cast<double>(fixed.remote_faults) / static_cast<double>(moving.remote_faults));
  }
  if (!local.error.empty())
    std::fprintf(stderr, "vcpu_migration: local: %s\n", local.error.c_str());
  if (!pod.error.empty()) std::fprintf(stderr, "vcpu_migration: pod: %s\n", pod.error.c_str());
  if (!lone.error.empty())
    std::fprintf(stderr, "vcpu_migration: lone vCPU: %s\n", lone.error.c_str());
  if (!ipis.error.empty()) std::fprintf(stderr, "vcpu_migration: ipi: %s\n", ipis.error.c_str());
  if (!wander_error.empty())
    std::fprintf(stderr, "vcpu_migration: wander: %s\n", wander_error.c_str());
  return local.error.empty() && pod.error.empty() && lone.error.empty() && ipis.error.empty() &&
                 wander_error.empty()
             ? 0
             : 1;
}

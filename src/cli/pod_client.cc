#include "cli/pod_client.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "net/handshake.hpp"
#include "net/tcp_link.hpp"
#include "pod/pod_messages.hpp"
#include "pod/pod_spec.hpp"

namespace shoal {

namespace {

using net::Frame;
using net::MessageType;

constexpr auto kStopGrace = std::chrono::seconds(30);

struct Host {
  const PodHost* spec;
  std::unique_ptr<net::TcpLink> link;
  std::optional<PodOutcome> outcome;
  std::string link_error;
  uint32_t last_request = 0;  // ask()'s numbering; the node echoes it in its reply
};

void print_console(const Frame& f) {
  (void)!::write(1, f.payload.data(), f.payload.size());
}

// The reply to the last request; console output and outcomes that arrive first are handled.
// With `request` (not 0), replies to earlier requests are skipped: pod_up's abort_all asks
// hosts to stop while an answer to their load may still be on its way, and taking that one
// for the stop's answer let this process end before the node had stopped the pod; its stop
// then stopped the next `pod up`'s pod instead (PodSnapshot test, 2026-12-03).
Result<Frame> await_reply(Host& h, uint32_t request = 0) {
  for (;;) {
    auto f = h.link->receive();
    if (!f) return f.error();
    if (f->type == MessageType::kConsole) {
      print_console(*f);
    } else if (f->type == MessageType::kPodExit) {
      auto o = decode_pod_outcome(*f);
      h.outcome = o ? *o : PodOutcome{1, true, o.error().message()};
    } else if (request == 0 || f->request == request) {
      return f;
    }
  }
}

Result<PodReply> await_pod_reply(Host& h, uint32_t request = 0) {
  auto reply = await_reply(h, request);
  if (!reply) return reply.error();
  return decode_pod_reply(*reply);
}

// Sends a request and returns the node's answer, whether it says ok or not.
Result<PodReply> ask(Host& h, Frame f) {
  f.request = ++h.last_request;
  if (Status s = h.link->send(f); !s.ok()) return s.error();
  return await_pod_reply(h, f.request);
}

// A request that must succeed: a "not ok" answer is an error carrying the node's message.
Status request(Host& h, const Frame& f) {
  auto r = ask(h, f);
  if (!r) return r.error();
  if (!r->ok) return Error(r->text);
  return {};
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(path + ": cannot read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Follows a running pod until every host has reported how it stopped (or its link broke).
int follow(std::vector<Host>& hosts, const std::string& pod_name) {
  std::mutex mu;
  std::condition_variable cv;
  size_t finished = 0;
  std::vector<std::thread> readers;
  for (auto& h : hosts) {
    if (h.outcome) {
      ++finished;
      continue;
    }
    readers.emplace_back([&, hp = &h] {
      for (;;) {
        auto f = hp->link->receive();
        std::lock_guard lock(mu);
        if (!f) {
          hp->link_error = f.error().message();
          break;
        }
        if (f->type == MessageType::kConsole) print_console(*f);
        if (f->type == MessageType::kPodExit) {
          auto o = decode_pod_outcome(*f);
          hp->outcome = o ? *o : PodOutcome{1, true, o.error().message()};
          break;
        }
      }
      ++finished;
      cv.notify_all();
    });
  }
  // Ctrl-C / SIGTERM: stop the pod on every host, then keep following until they report.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR1);  // how this function ends the stopper thread
  std::thread stopper([&] {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0 || sig == SIGUSR1) return;
    std::fprintf(stderr, "shoal: stopping pod %s\n", pod_name.c_str());
    for (auto& h : hosts) (void)h.link->send(Frame{MessageType::kPodStop, 0, {}});
  });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return finished == hosts.size() || hosts[0].outcome.has_value(); });
    // Host 0 reported: the others follow within the grace time, or are declared lost.
    if (!cv.wait_for(lock, kStopGrace, [&] { return finished == hosts.size(); }))
      for (auto& h : hosts)
        if (!h.outcome && h.link_error.empty()) h.link_error = "no report after the pod stopped";
  }
  for (auto& h : hosts) h.link->close();
  for (auto& t : readers) t.join();
  pthread_kill(stopper.native_handle(), SIGUSR1);
  stopper.join();

  int code = 0;
  bool failed = false;
  for (auto& h : hosts) {
    if (h.outcome) {
      std::fprintf(stderr, "shoal: host %s: %s\n", h.spec->name.c_str(), h.outcome->reason.c_str());
      failed |= h.outcome->failed;
    } else {
      std::fprintf(stderr, "shoal: host %s: lost: %s\n", h.spec->name.c_str(),
                   h.link_error.c_str());
      failed = true;
    }
  }
  if (hosts[0].outcome && !hosts[0].outcome->failed) code = hosts[0].outcome->exit_code;
  if (failed) return code != 0 ? code : kExitVmmError;
  return code;
}

int pod_up(const PodSpec& spec, const std::string& yaml, const std::string& restore_dir,
           std::vector<Host>& hosts) {
  auto abort_all = [&](const std::string& why) {
    for (auto& h : hosts)
      if (h.link) (void)request(h, Frame{MessageType::kPodStop, 0, {}});
    return report_error(kExitVmmError, why);
  };
  for (size_t i = 0; i < hosts.size(); ++i)
    if (Status s =
            request(hosts[i], encode_pod_start({static_cast<uint16_t>(i), yaml, restore_dir}));
        !s.ok())
      return abort_all("host " + hosts[i].spec->name + ": start: " + s.error().message());
  // As the members do: a host silent for the pod's failure timeout is lost.
  for (auto& h : hosts) h.link->watch_liveness(std::chrono::milliseconds(spec.failure_timeout_ms));
  // Every member connects its part of the mesh at once; then collect the answers.
  for (auto& h : hosts)
    if (Status s = h.link->send(Frame{MessageType::kPodConnect, 0, {}}); !s.ok())
      return abort_all("host " + h.spec->name + ": " + s.error().message());
  for (auto& h : hosts) {
    auto r = await_pod_reply(h);
    if (!r || !r->ok)
      return abort_all("host " + h.spec->name + ": mesh: " + (r ? r->text : r.error().message()));
  }
  // Host 0 loads the guest; restoring, every host restores its own file (at once) and host 0's
  // answer carries the plan.
  const size_t loaders = restore_dir.empty() ? 1 : hosts.size();
  for (size_t i = 0; i < loaders; ++i)
    if (Status s = hosts[i].link->send(Frame{MessageType::kPodLoad, 0, {}}); !s.ok())
      return abort_all("host " + hosts[i].spec->name + ": " + s.error().message());
  std::optional<BootPlan> plan;
  uint64_t host0_snapshot = 0;
  for (size_t i = 0; i < loaders; ++i) {
    const std::string what = "host " + hosts[i].spec->name + ": ";
    auto loaded = await_reply(hosts[i]);
    if (!loaded) return abort_all(what + loaded.error().message());
    if (loaded->type != MessageType::kPodRun) {
      auto r = decode_pod_reply(*loaded);
      return abort_all(what + (restore_dir.empty() ? "load: " : "restore: ") +
                       (r ? r->text : r.error().message()));
    }
    uint64_t snapshot = 0;
    auto p = decode_boot_plan(*loaded, &snapshot);
    if (!p) return abort_all(what + p.error().message());
    if (i == 0) {
      plan = *p;
      host0_snapshot = snapshot;
    } else if (snapshot != host0_snapshot) {
      // A crash between two members' commits, or files copied by hand, mixes snapshots: their
      // pages and directories would not fit together.
      return abort_all(what +
                       fmt::format("restore: its file is of another pod snapshot (id {:016x}, "
                                   "host {}'s is {:016x}); restore every host from the files "
                                   "of one `pod snapshot`",
                                   snapshot, hosts[0].spec->name, host0_snapshot));
    }
  }
  for (auto& h : hosts)
    if (Status s = request(h, encode_boot_plan(MessageType::kPodRun, *plan)); !s.ok())
      return abort_all("host " + h.spec->name + ": run: " + s.error().message());
  std::string names;
  for (auto& h : hosts) names += (names.empty() ? "" : ", ") + h.spec->name;
  std::fprintf(stderr, "shoal: pod %s %s on %zu hosts (%s), %d vCPUs\n", spec.name.c_str(),
               restore_dir.empty() ? "running" : ("restored from " + restore_dir).c_str(),
               hosts.size(), names.c_str(), spec.vcpus);
  return follow(hosts, spec.name);
}

// Host 0 coordinates a move or a snapshot: only its node is asked.
int ask_host0(const PodSpec& spec, const std::vector<uint8_t>& secret, const Frame& f) {
  const PodHost& h0 = spec.hosts[0];
  auto link = net::TcpLink::connect(h0.host, h0.port,
                                    {"shoal-cli", secret, std::chrono::milliseconds(5000)});
  if (!link) return report_error(kExitVmmError, "host " + h0.name + ": " + link.error().message());
  (*link)->watch_liveness(kControlLinkTimeout);
  Host host{&h0, std::move(*link), {}, {}};
  auto r = ask(host, f);
  (void)host.link->send(Frame{MessageType::kBye, 0, {}});
  if (!r) return report_error(kExitVmmError, r.error().message());
  if (!r->ok) return report_error(kExitVmmError, r->text);
  std::printf("%s\n", r->text.c_str());
  return 0;
}

int move_vcpu(const PodControlCommand& command, const PodSpec& spec,
              const std::vector<uint8_t>& secret) {
  const auto to = std::find_if(spec.hosts.begin(), spec.hosts.end(),
                               [&](const PodHost& h) { return h.name == command.to_host; });
  if (to == spec.hosts.end())
    return report_error(kExitUsage,
                        "--to " + command.to_host + ": no such host in pod " + spec.name);
  if (command.vcpu >= spec.vcpus)
    return report_error(kExitUsage, "--vcpu " + std::to_string(command.vcpu) + ": pod " +
                                        spec.name + " has " + std::to_string(spec.vcpus) +
                                        " vCPUs");
  const VcpuMove m{
      static_cast<uint32_t>(command.vcpu), static_cast<uint16_t>(to - spec.hosts.begin()), 0, {}};
  return ask_host0(spec, secret, encode_vcpu_move(MessageType::kPodMove, m));
}

}  // namespace

int control_pod(const PodControlCommand& command) {
  auto yaml = read_text(command.spec);
  if (!yaml) return report_error(kExitUsage, yaml.error().message());
  auto parsed = parse_pod_spec(*yaml);
  for (const auto& e : parsed.errors) std::fprintf(stderr, "shoal: error: %s\n", e.c_str());
  if (!parsed.spec) return kExitUsage;
  const PodSpec& spec = *parsed.spec;
  auto secret =
      net::read_secret_file(command.secret_file.empty() ? spec.secret_file : command.secret_file);
  if (!secret) return report_error(kExitUsage, secret.error().message());
  // The follower takes these synchronously (sigwait); block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  using Action = PodControlCommand::Action;
  if (command.action == Action::kMove) return move_vcpu(command, spec, *secret);
  // DIR (snapshot, --restore) is read or written by each node on its own host: a relative path
  // would mean each node's working directory.
  const std::string dir =
      command.dir.empty() ? "" : std::filesystem::absolute(command.dir).lexically_normal().string();
  if (dir.size() > kMaxSnapshotDirBytes)
    return report_error(
        kExitUsage, std::string(command.action == Action::kUp ? "--restore" : "DIR") +
                        ": a path of at most " + std::to_string(kMaxSnapshotDirBytes) + " bytes");
  if (command.action == Action::kSnapshot) {
    if (dir.empty()) return report_error(kExitUsage, "DIR: a directory is needed");
    return ask_host0(spec, *secret, encode_pod_snapshot_request({command.stay_paused, dir}));
  }
  std::vector<Host> hosts;
  int unreachable = 0;
  for (const auto& h : spec.hosts) {
    auto link = net::TcpLink::connect(h.host, h.port,
                                      {"shoal-cli", *secret, std::chrono::milliseconds(5000)});
    if (!link) {
      std::fprintf(stderr, "shoal: host %s (%s:%u): %s\n", h.name.c_str(), h.host.c_str(), h.port,
                   link.error().message().c_str());
      ++unreachable;
      hosts.push_back({&h, nullptr, {}, {}});
      continue;
    }
    (*link)->watch_liveness(kControlLinkTimeout);
    hosts.push_back({&h, std::move(*link), {}, {}});
  }
  if (command.action == Action::kUp) {
    if (unreachable) return report_error(kExitVmmError, "not every host of the pod is reachable");
    return pod_up(spec, *yaml, dir, hosts);
  }
  int failures = unreachable;
  for (auto& h : hosts) {
    if (!h.link) continue;
    const auto type =
        command.action == Action::kStatus ? MessageType::kPodStatus : MessageType::kPodStop;
    auto r = ask(h, Frame{type, 0, {}});
    if (!r) {
      std::printf("%s: error: %s\n", h.spec->name.c_str(), r.error().message().c_str());
      ++failures;
      continue;
    }
    std::printf("%s: %s\n", h.spec->name.c_str(), r->text.c_str());
    failures += r->ok ? 0 : 1;
    (void)h.link->send(Frame{MessageType::kBye, 0, {}});
  }
  return failures == 0 ? 0 : kExitVmmError;
}

}  // namespace shoal

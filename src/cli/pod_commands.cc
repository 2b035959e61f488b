#include "cli/pod_commands.hpp"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "net/handshake.hpp"
#include "net/tcp_link.hpp"
#include "pod/node_service.hpp"
#include "pod/pod_spec.hpp"
#include "shoal/log.hpp"
#include "shoal/service_notify.hpp"
#include "shoal/size.hpp"

namespace shoal {

int run_node(const NodeCommand& command) {
  auto address = parse_host_port(command.listen);
  if (!address) return report_error(kExitUsage, "--listen: " + address.error().message());
  auto secret = net::read_secret_file(command.secret_file);
  if (!secret) return report_error(kExitUsage, "--secret-file: " + secret.error().message());
  // SIGTERM (systemctl stop) and SIGINT are taken synchronously below; block them before any
  // thread starts so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto node = NodeService::start(
      {address->first, address->second, command.name, *secret, command.api_socket});
  if (!node) return report_error(kExitVmmError, node.error().message());
  const std::string where = address->first + ":" + std::to_string((*node)->port());
  log::info("node '{}' listening on {}", command.name, where);
  notify_service_manager("READY=1\nSTATUS=listening on " + where);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  notify_service_manager("STOPPING=1\nSTATUS=stopping");
  log::info("node '{}' stopping on {} ({} peers served, {} refused)", command.name, strsignal(sig),
            (*node)->peers_served(), (*node)->peers_refused());
  (*node)->stop();
  return 0;
}

int validate_pod(const std::string& path) {
  auto r = load_pod_spec(path);
  for (const auto& e : r.errors) std::fprintf(stderr, "shoal: error: %s\n", e.c_str());
  if (!r.spec) return kExitUsage;
  const PodSpec& s = *r.spec;
  std::printf("pod %s: %d vCPUs, %s over %zu hosts\n", s.name.c_str(), s.vcpus,
              format_size(s.memory).c_str(), s.hosts.size());
  // The settings that have defaults, so a reader sees what a spec that leaves them out gets.
  std::printf("  transport %s, failure timeout %llu ms, page hold %llu us, placement %s\n",
              s.transport == PodTransport::kRdma ? "rdma" : "tcp",
              static_cast<unsigned long long>(s.failure_timeout_ms),
              static_cast<unsigned long long>(s.page_hold_us),
              s.placement == PodPlacement::kAuto ? "auto" : "static");
  std::string devices;
  auto device = [&](const std::string& d) { devices += (devices.empty() ? "" : ", ") + d; };
  for (const auto& d : s.disks) device("disk " + d.path + (d.read_only ? " (ro)" : ""));
  for (const auto& n : s.nets) device("net tap=" + n.tap);
  if (!s.channel.empty()) device("channel " + s.channel);
  if (!devices.empty())
    std::printf("  devices on %s: %s\n", s.hosts.front().name.c_str(), devices.c_str());
  for (const auto& h : s.hosts) {
    std::string vcpus, home;
    for (int v : h.vcpus) vcpus += (vcpus.empty() ? "" : ",") + std::to_string(v);
    for (const auto& m : h.home)
      home += (home.empty() ? "" : " ") +
              ("[" + format_size(m.start) + ", " + format_size(m.start + m.size) + ")");
    std::printf("  %s %s:%u  vcpus %s (at most %d)  home %s  zero pool %s\n", h.name.c_str(),
                h.host.c_str(), h.port, vcpus.empty() ? "none" : vcpus.c_str(), h.max_vcpus,
                home.c_str(), format_size(h.zero_pool_bytes).c_str());
  }
  return 0;
}

int ping_pod(const PodPingCommand& command) {
  auto r = load_pod_spec(command.spec);
  for (const auto& e : r.errors) std::fprintf(stderr, "shoal: error: %s\n", e.c_str());
  if (!r.spec) return kExitUsage;
  const std::string secret_path =
      command.secret_file.empty() ? r.spec->secret_file : command.secret_file;
  auto secret = net::read_secret_file(secret_path);
  if (!secret) return report_error(kExitUsage, secret.error().message());
  int failures = 0;
  for (const auto& h : r.spec->hosts) {
    auto link = net::TcpLink::connect(h.host, h.port,
                                      {"shoal-cli", *secret, std::chrono::milliseconds(3000)});
    if (!link) {
      std::printf("%s %s:%u  error: %s\n", h.name.c_str(), h.host.c_str(), h.port,
                  link.error().message().c_str());
      ++failures;
      continue;
    }
    (*link)->watch_liveness(kControlLinkTimeout);
    double best_us = 1e18;
    bool ok = true;
    for (int i = 0; i < command.count && ok; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      ok = (*link)->send(net::Frame{net::MessageType::kPing, static_cast<uint32_t>(i), {}}).ok();
      auto pong = ok ? (*link)->receive() : Result<net::Frame>(Error("send failed"));
      ok = pong.ok() && pong->type == net::MessageType::kPong;
      best_us = std::min(
          best_us,
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    (void)(*link)->send(net::Frame{net::MessageType::kBye, 0, {}});
    if (ok)
      std::printf("%s %s:%u  node '%s' ok, round trip %.0f us\n", h.name.c_str(), h.host.c_str(),
                  h.port, (*link)->peer_name().c_str(), best_us);
    else
      std::printf("%s %s:%u  error: no pong\n", h.name.c_str(), h.host.c_str(), h.port), ++failures;
  }
  return failures == 0 ? 0 : kExitVmmError;
}

}  // namespace shoal

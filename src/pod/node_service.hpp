// `shoal node`: the per-host service of a pod. Today it listens, authenticates every peer with
// the pod secret, and answers pings (what `shoal pod ping` and health checks use); running a
// share of a pod's vCPUs and memory is built on these links next. Reports readiness and
// status to systemd (Type=notify).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/tcp_link.hpp"

namespace shoal {

struct NodeConfig {
  std::string listen_host;
  uint16_t listen_port = 0;
  std::string name;
  std::vector<uint8_t> secret;
};

class NodeService {
 public:
  static Result<std::unique_ptr<NodeService>> start(const NodeConfig& config);
  ~NodeService();  // stops accepting and closes every link
  uint16_t port() const { return listener_->port(); }
  void stop();
  uint64_t peers_served() const { return served_.load(); }
  uint64_t peers_refused() const { return refused_.load(); }

 private:
  NodeService() = default;
  void accept_loop();
  void serve(std::unique_ptr<net::TcpLink> link);

  NodeConfig config_;
  std::unique_ptr<net::TcpListener> listener_;
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<net::TcpLink*> live_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> served_{0}, refused_{0};
};

// Parses "HOST:PORT" (an IP address and a port).
Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& text);

}  // namespace shoal

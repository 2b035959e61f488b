// `shoal node`: the per-host service of a pod. It listens, authenticates every peer with the
// pod secret, answers pings, and runs this host's member of a pod (pod/pod_member.hpp) as
// `shoal pod up/status/down` ask: one pod at a time. Admission is bounded (see
// kMaxPendingHandshakes). A member's mesh links arrive here too
// (kMeshJoin) and are handed to the member. Reports readiness and status to systemd
// (Type=notify).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "machine/api_server.hpp"
#include "net/tcp_link.hpp"
#include "pod/pod_member.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

struct NodeConfig {
  std::string listen_host;
  uint16_t listen_port = 0;
  std::string name;
  std::vector<uint8_t> secret;
  // The control API (machine/api_server.hpp) for this node's pod: status and metrics on any
  // node; pause, resume, snapshot (a directory, as `pod snapshot`) and quit through host 0's.
  std::string api_socket;
};

class NodeService {
 public:
  static Result<std::unique_ptr<NodeService>> start(const NodeConfig& config);
  ~NodeService();  // stops accepting and closes every link
  uint16_t port() const { return listener_->port(); }
  void stop();
  uint64_t peers_served() const { return served_.load(); }
  uint64_t peers_refused() const { return refused_.load(); }
  // A peer has this long to authenticate, and at most kMaxPendingHandshakes connections may be
  // unauthenticated at once: beyond that, the oldest is cut off if it has had kHandshakeGrace
  // (else the newcomer is), so a flood of silent or garbage connections holds a bounded number
  // of threads and descriptors, and a real peer still gets through. The cap leaves room for a
  // whole pod's members connecting at once (31 at host 0 of a 32-host pod).
  static constexpr auto kHandshakeDeadline = std::chrono::milliseconds(2000);
  static constexpr auto kHandshakeGrace = std::chrono::milliseconds(200);
  static constexpr size_t kMaxPendingHandshakes = 64;

 private:
  NodeService() = default;
  void accept_loop();
  void serve(std::shared_ptr<net::TcpLink> link);
  // Control requests; each returns the reply to send.
  net::Frame start_pod(const net::Frame& request, const std::shared_ptr<net::TcpLink>& client);
  net::Frame pod_request(const net::Frame& request);
  std::shared_ptr<PodMember> current_pod();
  std::string last_pod_status();
  ApiReply handle_api(const ApiRequest& r);
  void release_finished_pods();  // the reaper thread

  NodeConfig config_;
  std::unique_ptr<net::TcpListener> listener_;
  std::unique_ptr<ApiServer> api_;
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable workers_done_;
  size_t workers_ = 0;  // connection threads still running (detached; stop() waits for 0)
  // Connections still in the handshake, oldest first: a duplicate of each socket's fd, owned
  // here, so cutting one off (shutdown) can never hit a descriptor that was closed and reused.
  struct Pending {
    uint64_t id;
    UniqueFd fd;
    std::chrono::steady_clock::time_point since;
  };
  std::deque<Pending> pending_;
  uint64_t next_pending_ = 1;
  std::vector<net::TcpLink*> live_;
  std::atomic<bool> stopping_{false};
  std::mutex pod_mu_;  // one control request at a time changes the pod
  std::shared_ptr<PodMember> pod_;
  // A pod that ended is released by the reaper once torn down: its guest RAM, VM and devices'
  // descriptors (a tap, a disk, the channel's socket) are not held until the next pod. What
  // `pod status` said of it last stays, under pod_mu_.
  std::string last_status_;
  // Under pod_mu_: the reaper holds a finished pod and waits for its teardown. start_pod waits
  // for it (pod_cv_): the old pod's tap, locked disks and RAM go before a new pod opens its own.
  bool releasing_ = false;
  std::condition_variable pod_cv_;
  std::mutex reap_mu_;
  std::condition_variable reap_cv_;
  bool reap_ = false;  // under reap_mu_: a pod finished
  std::thread reaper_;
  std::atomic<uint64_t> served_{0}, refused_{0};
};

// Parses "HOST:PORT" (an IP address and a port).
Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& text);

}  // namespace shoal

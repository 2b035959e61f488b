#include "pod/node_service.hpp"
#include "shoal/service_notify.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "pod/pod_messages.hpp"
#include "shoal/log.hpp"

namespace shoal {

Result<std::pair<std::string, uint16_t>> parse_host_port(const std::string& text) {
  const auto colon = text.rfind(':');
  unsigned port = 0;
  if (colon != std::string::npos && colon > 0) {
    const char* b = text.data() + colon + 1;
    const char* e = text.data() + text.size();
    auto r = std::from_chars(b, e, port);
    if (r.ec == std::errc() && r.ptr == e && port <= 65535)
      return std::make_pair(text.substr(0, colon), static_cast<uint16_t>(port));
  }
  return Error("expected HOST:PORT, got '" + text + "'");
}

Result<std::unique_ptr<NodeService>> NodeService::start(const NodeConfig& config) {
  std::unique_ptr<NodeService> n(new NodeService());
  n->config_ = config;
  auto l = net::TcpListener::listen(config.listen_host, config.listen_port);
  if (!l) return l.error();
  n->listener_ = std::move(*l);
  if (!config.api_socket.empty()) {
    auto api = ApiServer::start(
        config.api_socket, [self = n.get()](const ApiRequest& r) { return self->handle_api(r); });
    if (!api) return api.error().context("--api-socket");
    n->api_ = std::move(*api);
  }
  n->acceptor_ = std::thread([self = n.get()] { self->accept_loop(); });
  n->reaper_ = std::thread([self = n.get()] { self->release_finished_pods(); });
  return n;
}

NodeService::~NodeService() {
  stop();
}

void NodeService::stop() {
  if (stopping_.exchange(true)) return;
  if (api_) api_->stop();  // no request reaches the pod from here on
  listener_->close();      // wakes the accept loop
  if (acceptor_.joinable()) acceptor_.join();
  // The pod before the links: its teardown tells the other members and the `pod up` client
  // why it stops ("the node is shutting down") over links still open. Closed first, the client
  // only saw its link end and reported this host as lost.
  std::shared_ptr<PodMember> pod;
  {
    std::lock_guard lock(pod_mu_);  // start_pod checks stopping_ under it: no pod after this
    pod.swap(pod_);
  }
  // Stopped here even if a request's thread still holds it (a mesh connect, a snapshot): that
  // thread's wait ends with the pod, and the last reference joins its teardown.
  if (pod) pod->stop({0, true, "the node is shutting down"});
  pod.reset();
  {
    std::lock_guard lock(reap_mu_);
    reap_cv_.notify_all();  // stopping_ is set: the reaper ends (a pod it holds is torn down)
  }
  if (reaper_.joinable()) reaper_.join();
  std::unique_lock lock(mu_);
  for (auto* l : live_) l->close();
  for (auto& p : pending_) ::shutdown(p.fd.get(), SHUT_RDWR);
  workers_done_.wait(lock, [&] { return workers_ == 0; });
}

void NodeService::accept_loop() {
  while (!stopping_) {
    auto socket = listener_->accept();
    if (!socket || stopping_) return;
    uint64_t id = 0;
    {
      std::lock_guard lock(mu_);
      const auto now = std::chrono::steady_clock::now();
      if (pending_.size() >= kMaxPendingHandshakes) {
        if (now - pending_.front().since < kHandshakeGrace) {
          ++refused_;  // every slot is young: the newcomer goes (the socket closes here)
          continue;
        }
        // The oldest has had the longest to answer; its thread sees the shutdown at once.
        ::shutdown(pending_.front().fd.get(), SHUT_RDWR);
        pending_.pop_front();
      }
      id = next_pending_++;
      pending_.push_back({id, UniqueFd(::dup(socket->native_handle())), now});
      ++workers_;
    }
    // The thread gets the bare descriptor: nothing of the listener's io_context may outlive
    // the service, and a detached thread's captures are destroyed after it says it is done.
    std::thread([this, id, fd = socket->release()] {
      auto link = net::TcpLink::accept_fd(
          fd, net::LinkIdentity{config_.name, config_.secret, kHandshakeDeadline});
      {
        std::lock_guard lock(mu_);
        std::erase_if(pending_, [&](const Pending& p) { return p.id == id; });
      }
      if (link)
        serve(std::shared_ptr<net::TcpLink>(std::move(*link)));
      else
        ++refused_;  // TcpLink::accept logged who and why
      std::lock_guard lock(mu_);
      --workers_;
      workers_done_.notify_all();
    }).detach();
  }
}

void NodeService::serve(std::shared_ptr<net::TcpLink> link) {
  using net::MessageType;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    live_.push_back(link.get());
  }
  ++served_;
  link->watch_liveness(kControlLinkTimeout);
  log::info("peer '{}' authenticated", link->peer_name());
  auto forget = [&] {
    std::lock_guard lock(mu_);
    live_.erase(std::remove(live_.begin(), live_.end(), link.get()), live_.end());
  };
  for (;;) {
    auto f = link->receive();
    if (!f) {
      if (!stopping_) log::info("link to '{}' ended: {}", link->peer_name(), f.error().message());
      break;
    }
    net::Frame reply{MessageType::kPodReply, f->request, {}};
    switch (f->type) {
      case MessageType::kPing:
        reply = net::Frame{MessageType::kPong, f->request, f->payload};
        break;
      case MessageType::kBye:
        forget();
        return;
      case MessageType::kMeshJoin: {
        // Another member of our pod: the link now belongs to the pod's mesh.
        auto join = decode_mesh_join(*f);
        auto pod = current_pod();
        forget();
        if (!join || !pod || pod->spec().name != join->pod_name ||
            !pod->attach(join->host_index, link)) {
          log::warn("peer '{}' could not join: {}; closing", link->peer_name(),
                    pod && join && pod->spec().name == join->pod_name
                        ? "its link did not come up (the line above says why)"
                        : "this node does not run that pod");
          link->close();
        }
        return;
      }
      case MessageType::kPodStart:
        reply = start_pod(*f, link);
        break;
      case MessageType::kPodConnect:
      case MessageType::kPodLoad:
      case MessageType::kPodRun:
      case MessageType::kPodStop:
      case MessageType::kPodStatus:
      case MessageType::kPodMove:
      case MessageType::kPodSnapshot:
        reply = pod_request(*f);
        break;
      default:
        log::warn("peer '{}' sent message type {} this node does not serve; closing",
                  link->peer_name(), static_cast<int>(f->type));
        forget();
        return;
    }
    reply.request = f->request;
    if (!link->send(reply).ok()) break;
  }
  forget();
}

std::shared_ptr<PodMember> NodeService::current_pod() {
  std::lock_guard lock(pod_mu_);
  return pod_;
}

std::string NodeService::last_pod_status() {
  std::lock_guard lock(pod_mu_);
  return last_status_;
}

// Waits for a finished pod's teardown off the pod's own threads (its monitor tells the reaper
// from the `finished` callback, and cannot join itself), then lets it go. The member is
// destroyed by whoever holds it last: here, or a request thread that still had it.
void NodeService::release_finished_pods() {
  for (;;) {
    {
      std::unique_lock lock(reap_mu_);
      reap_cv_.wait(lock, [&] { return reap_ || stopping_; });
      if (stopping_) return;
      reap_ = false;
    }
    std::shared_ptr<PodMember> done;
    {
      std::lock_guard lock(pod_mu_);
      if (!pod_ || !pod_->stopped()) continue;
      done = pod_;
      releasing_ = true;
    }
    done->wait_stopped();
    std::lock_guard lock(pod_mu_);
    if (pod_ == done) {  // else stop() took it meanwhile
      last_status_ = done->status();
      pod_.reset();
    }
    done.reset();  // under pod_mu_: gone before start_pod can open the next pod's devices
    releasing_ = false;
    pod_cv_.notify_all();
  }
}

net::Frame NodeService::start_pod(const net::Frame& request,
                                  const std::shared_ptr<net::TcpLink>& client) {
  auto fail = [](const std::string& why) { return encode_pod_reply({false, why}); };
  auto start = decode_pod_start(request);
  if (!start) return fail(start.error().message());
  auto parsed = parse_pod_spec(start->spec_yaml);
  if (!parsed.spec) {
    std::string all;
    for (const auto& e : parsed.errors) all += (all.empty() ? "" : "; ") + e;
    return fail("pod spec: " + all);
  }
  if (start->host_index >= parsed.spec->hosts.size())
    return fail("host index " + std::to_string(start->host_index) + " is not in the pod");
  std::unique_lock lock(pod_mu_);
  pod_cv_.wait(lock, [&] { return !releasing_; });  // the last pod's teardown ends first
  if (stopping_) return fail("this node is shutting down");
  if (pod_ && !pod_->stopped()) return fail("this node already runs pod " + pod_->spec().name);
  pod_.reset();  // a finished pod: wait for its teardown
  last_status_.clear();
  PodMemberConfig c;
  c.spec = std::move(*parsed.spec);
  c.self = start->host_index;
  c.restore_dir = start->restore_dir;
  c.identity = net::LinkIdentity{config_.name, config_.secret, std::chrono::milliseconds(5000)};
  const std::string name = c.spec.name;
  c.console = [client](const std::string& text) {
    (void)client->send(
        net::Frame{net::MessageType::kConsole, 0, std::vector<uint8_t>(text.begin(), text.end())});
  };
  c.finished = [this, client, name](const PodOutcome& o) {
    (void)client->send(encode_pod_outcome(net::MessageType::kPodExit, o));
    notify_service_manager("STATUS=pod " + name + " stopped: " + o.reason);
    std::lock_guard lock(reap_mu_);  // never pod_mu_ here: its holder may be joining this thread
    reap_ = true;
    reap_cv_.notify_all();
  };
  const auto failure_timeout = std::chrono::milliseconds(c.spec.failure_timeout_ms);
  auto member = PodMember::create(std::move(c));
  if (!member) return fail(member.error().message());
  client->watch_liveness(failure_timeout);  // `pod up` notices this host's loss as fast
  pod_ = std::move(*member);
  notify_service_manager("STATUS=running pod " + name);
  log::info("pod {}: this node is host {} of {}", name, pod_->spec().hosts[start->host_index].name,
            pod_->spec().hosts.size());
  return encode_pod_reply({true, "created"});
}

// The control API: what `pod status/snapshot/down` do over TCP, on this node's Unix socket.
ApiReply NodeService::handle_api(const ApiRequest& r) {
  using C = ApiRequest::Command;
  auto pod = current_pod();
  if (r.command == C::kStatus) {
    const std::string last = pod ? std::string() : last_pod_status();
    return ApiReply{}
        .with("node", config_.name)
        .with("state", pod            ? pod->state()
                       : last.empty() ? "idle"
                                      : "stopped")
        .with("pod", pod            ? pod->status()
                     : last.empty() ? "no pod"
                                    : last);
  }
  if (!pod || pod->stopped()) return ApiReply::failure("this node runs no pod");
  switch (r.command) {
    case C::kMetrics:
      return ApiReply{}.with("metrics", pod->metrics());
    case C::kPause:
    case C::kResume: {
      Status s = r.command == C::kPause ? pod->pause_pod() : pod->resume_pod();
      if (!s.ok()) return ApiReply::failure(s.error().message());
      return ApiReply{}.with("state", pod->state());
    }
    case C::kSnapshot: {
      if (r.working_set_ms != 0) return ApiReply::failure("snapshot: no working set in a pod yet");
      if (r.path.empty() || r.path.front() != '/' || r.path.size() > kMaxSnapshotDirBytes)
        return ApiReply::failure("snapshot: path: an absolute directory, every host writes in it");
      auto done = pod->snapshot(r.path, r.stop);
      if (!done) return ApiReply::failure(done.error().message());
      return ApiReply{}.with("path", r.path).with("report", *done).with("state", pod->state());
    }
    case C::kQuit:
      pod->stop({0, false, "stopped on the control API"});
      return ApiReply{}.with("state", std::string("stopping"));
    default:
      return ApiReply::failure("unknown command");
  }
}

net::Frame NodeService::pod_request(const net::Frame& request) {
  using net::MessageType;
  auto pod = current_pod();
  if (request.type == MessageType::kPodStatus) {
    if (pod) return encode_pod_reply({true, pod->status()});
    const std::string last = last_pod_status();
    return encode_pod_reply({true, last.empty() ? "idle: no pod" : last});
  }
  if (!pod && request.type == MessageType::kPodStop)
    return encode_pod_reply(
        {true, last_pod_status().empty() ? "idle: no pod" : "the pod is stopped"});
  if (!pod) {
    // A pod that ended was released (see release_finished_pods), as a stopped one it answers.
    const std::string why =
        last_pod_status().empty() ? "this node runs no pod" : "the pod is stopped";
    return encode_pod_reply(
        {false, request.type == MessageType::kPodSnapshot ? "pod snapshot: " + why : why});
  }
  switch (request.type) {
    case MessageType::kPodConnect: {
      Status s = pod->connect_mesh();
      return encode_pod_reply({s.ok(), s.ok() ? "connected" : s.error().message()});
    }
    case MessageType::kPodLoad: {
      auto plan = pod->load();
      if (!plan) return encode_pod_reply({false, plan.error().message()});
      return encode_boot_plan(MessageType::kPodRun, *plan, pod->restored_snapshot_id());
    }
    case MessageType::kPodRun: {
      auto plan = decode_boot_plan(request);
      Status s = plan ? pod->run(*plan) : Status(plan.error());
      return encode_pod_reply({s.ok(), s.ok() ? "running" : s.error().message()});
    }
    case MessageType::kPodMove: {
      auto m = decode_vcpu_move(request);
      auto r = m ? pod->move_vcpu(m->vcpu, m->host) : Result<std::string>(m.error());
      return encode_pod_reply({r.ok(), r ? *r : r.error().message()});
    }
    case MessageType::kPodSnapshot: {
      auto req = decode_pod_snapshot_request(request);
      auto r = req ? pod->snapshot(req->dir, req->stay_paused) : Result<std::string>(req.error());
      return encode_pod_reply({r.ok(), r ? *r : r.error().message()});
    }
    case MessageType::kPodStop:
      pod->stop({0, false, "stopped by shoal pod down"});
      pod->wait_stopped();
      return encode_pod_reply({true, "stopped pod " + pod->spec().name});
    default:
      return encode_pod_reply({false, "not a pod request"});
  }
}

}  // namespace shoal

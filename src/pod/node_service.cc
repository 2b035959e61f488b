#include "pod/node_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

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
  n->acceptor_ = std::thread([self = n.get()] { self->accept_loop(); });
  return n;
}

NodeService::~NodeService() {
  stop();
}

void NodeService::stop() {
  if (stopping_.exchange(true)) return;
  listener_->close();  // wakes the accept loop
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard lock(mu_);
    for (auto* l : live_) l->close();
  }
  for (auto& w : workers_)
    if (w.joinable()) w.join();
}

void NodeService::accept_loop() {
  while (!stopping_) {
    auto socket = listener_->accept();
    if (!socket || stopping_) return;
    std::lock_guard lock(mu_);
    workers_.emplace_back([this, s = std::move(*socket)]() mutable {
      auto link = net::TcpLink::accept(
          std::move(s),
          net::LinkIdentity{config_.name, config_.secret, std::chrono::milliseconds(5000)});
      if (!link) {
        ++refused_;  // TcpLink::accept logged who and why
        return;
      }
      serve(std::move(*link));
    });
  }
}

void NodeService::serve(std::unique_ptr<net::TcpLink> link) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    live_.push_back(link.get());
  }
  ++served_;
  spdlog::info("peer '{}' authenticated", link->peer_name());
  for (;;) {
    auto f = link->receive();
    if (!f) {
      if (!stopping_)
        spdlog::info("link to '{}' ended: {}", link->peer_name(), f.error().message());
      break;
    }
    if (f->type == net::MessageType::kPing) {
      if (!link->send(net::Frame{net::MessageType::kPong, f->request, f->payload}).ok()) break;
    } else if (f->type == net::MessageType::kBye) {
      break;
    } else {
      spdlog::warn("peer '{}' sent message type {} this node does not serve yet; closing",
                   link->peer_name(), static_cast<int>(f->type));
      break;
    }
  }
  std::lock_guard lock(mu_);
  live_.erase(std::remove(live_.begin(), live_.end(), link.get()), live_.end());
}

}  // namespace shoal

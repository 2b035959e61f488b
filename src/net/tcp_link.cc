#include "net/tcp_link.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

namespace shoal::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// Bounds the blocking handshake reads/writes so a silent peer cannot hold a node forever.
void set_timeouts(tcp::socket& s, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::string endpoint_text(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? std::string("unknown peer")
            : ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

TcpLink::TcpLink(std::unique_ptr<asio::io_context> io, tcp::socket socket)
    : io_(std::move(io)), socket_(std::move(socket)) {
  peer_address_ = endpoint_text(socket_);
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);  // page requests are small and latency-bound
}

TcpLink::~TcpLink() {
  close();
}

Result<std::unique_ptr<TcpLink>> TcpLink::connect(const std::string& host, uint16_t port,
                                                  const LinkIdentity& me) {
  auto io = std::make_unique<asio::io_context>();
  tcp::socket socket(*io);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return Error("connect " + host + ":" + std::to_string(port) + ": not an IP address");
  socket.connect(tcp::endpoint(address, port), ec);
  if (ec) return Error("connect " + host + ":" + std::to_string(port) + ": " + ec.message());
  std::unique_ptr<TcpLink> link(new TcpLink(std::move(io), std::move(socket)));
  Handshake hs(Handshake::Role::kClient, me.node_name, me.secret);
  set_timeouts(link->socket_, me.handshake_timeout);
  SHOAL_TRY(link->handshake(hs), "connect " + host + ":" + std::to_string(port));
  set_timeouts(link->socket_, std::chrono::milliseconds(0));
  return link;
}

Result<std::unique_ptr<TcpLink>> TcpLink::accept(tcp::socket socket, const LinkIdentity& me) {
  // The accepted socket belongs to the listener's io_context; give it one of its own.
  auto io = std::make_unique<asio::io_context>();
  const auto protocol = socket.local_endpoint().protocol();
  const int fd = socket.release();
  tcp::socket own(*io, protocol, fd);
  std::unique_ptr<TcpLink> link(new TcpLink(std::move(io), std::move(own)));
  Handshake hs(Handshake::Role::kServer, me.node_name, me.secret);
  set_timeouts(link->socket_, me.handshake_timeout);
  if (auto s = link->handshake(hs); !s.ok()) {
    spdlog::warn("refused connection from {}: {}", link->peer_address_, s.error().message());
    return s.error().context("accept from " + link->peer_address_);
  }
  set_timeouts(link->socket_, std::chrono::milliseconds(0));
  return link;
}

Status TcpLink::handshake(Handshake& hs) {
  auto send_all = [&](const std::vector<Frame>& frames) -> Status {
    for (const auto& f : frames) SHOAL_TRY(send(f), "handshake");
    return {};
  };
  SHOAL_TRY(send_all(hs.start()), "");
  while (!hs.done()) {
    auto f = read_frame();
    if (!f) return f.error().context("handshake");
    auto replies = hs.on_frame(*f);
    if (hs.failed()) {
      close();  // nothing more for this peer
      return Error("handshake: " + hs.failure());
    }
    SHOAL_TRY(send_all(replies), "");
  }
  peer_name_ = hs.peer_name();
  return {};
}

Status TcpLink::send(const Frame& frame) {
  if (frame.payload.size() > kMaxPayload)
    return Error("frame of " + std::to_string(frame.payload.size()) + " bytes exceeds the limit");
  const auto bytes = encode_frame(frame);
  std::lock_guard lock(send_mu_);
  boost::system::error_code ec;
  asio::write(socket_, asio::buffer(bytes), ec);
  if (ec)
    return Error("send to " + (peer_name_.empty() ? peer_address_ : peer_name_) + ": " +
                 ec.message());
  return {};
}

Status TcpLink::send_raw_for_test(const std::vector<uint8_t>& bytes) {
  std::lock_guard lock(send_mu_);
  boost::system::error_code ec;
  asio::write(socket_, asio::buffer(bytes), ec);
  if (ec) return Error("send: " + ec.message());
  return {};
}

Result<Frame> TcpLink::read_frame() {
  for (;;) {
    if (auto f = decoder_.next()) return *f;
    if (decoder_.error()) return *decoder_.error();
    uint8_t buf[64 * 1024];
    boost::system::error_code ec;
    const size_t n = socket_.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::eof)
      return Error(decoder_.buffered() > 0 ? "peer closed the connection mid-frame"
                                           : "peer closed the connection");
    if (ec) return Error("receive: " + ec.message());
    SHOAL_TRY(decoder_.feed(std::span<const uint8_t>(buf, n)), "receive");
  }
}

Result<Frame> TcpLink::receive() {
  auto f = read_frame();
  if (!f) return f.error().context(peer_name_.empty() ? peer_address_ : peer_name_);
  return f;
}

void TcpLink::close() {
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

Result<std::unique_ptr<TcpListener>> TcpListener::listen(const std::string& host, uint16_t port) {
  std::unique_ptr<TcpListener> l(new TcpListener());
  l->io_ = std::make_unique<asio::io_context>();
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return Error("listen " + host + ": not an IP address");
  l->acceptor_ = std::make_unique<tcp::acceptor>(*l->io_);
  const tcp::endpoint ep(address, port);
  l->acceptor_->open(ep.protocol(), ec);
  if (!ec) l->acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) l->acceptor_->bind(ep, ec);
  if (!ec) l->acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error("listen " + host + ":" + std::to_string(port) + ": " + ec.message());
  return l;
}

uint16_t TcpListener::port() const {
  boost::system::error_code ec;
  const auto ep = acceptor_->local_endpoint(ec);
  return ec ? 0 : ep.port();
}

Result<tcp::socket> TcpListener::accept() {
  boost::system::error_code ec;
  tcp::socket s(*io_);
  acceptor_->accept(s, ec);
  if (ec) return Error("accept: " + ec.message());
  return s;
}

void TcpListener::close() {
  // shutdown() wakes a thread blocked in accept() on Linux; close() alone would not.
  ::shutdown(acceptor_->native_handle(), SHUT_RDWR);
  boost::system::error_code ec;
  acceptor_->close(ec);
}

}  // namespace shoal::net

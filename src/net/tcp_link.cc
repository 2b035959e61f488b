#include "net/tcp_link.hpp"

#include <poll.h>
#include <sys/socket.h>

#include "shoal/clock.hpp"
#include "shoal/log.hpp"

namespace shoal::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

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
  // A link dropped by its owner still delivers what it queued (a CLI's last request, a
  // member's leave notice), unless the peer is gone.
  finish(std::chrono::milliseconds(1000));
  close();
  if (writer_.joinable()) writer_.join();
  boost::system::error_code ec;
  socket_.close(ec);
}

Result<std::unique_ptr<TcpLink>> TcpLink::connect(const std::string& host, uint16_t port,
                                                  const LinkIdentity& me) {
  const std::string where = "connect " + host + ":" + std::to_string(port);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return Error(where + ": not an IP address");
  // A node under a flood of connections may cut a handshake off (it holds a bounded number):
  // one that ends without an answer is tried again, with backoff, within the handshake
  // timeout. A refused connection or a failed authentication is final at once.
  const uint64_t deadline =
      monotonic_ns() +
      static_cast<uint64_t>(std::chrono::nanoseconds(me.handshake_timeout).count());
  auto backoff = std::chrono::milliseconds(20);
  for (;;) {
    auto io = std::make_unique<asio::io_context>();
    tcp::socket socket(*io);
    socket.connect(tcp::endpoint(address, port), ec);
    if (ec) return Error(where + ": " + ec.message());
    std::unique_ptr<TcpLink> link(new TcpLink(std::move(io), std::move(socket)));
    Handshake hs(Handshake::Role::kClient, me.node_name, me.secret);
    const uint64_t now = monotonic_ns();
    const uint64_t left_ms = now < deadline ? (deadline - now) / 1'000'000 : 0;
    Status s = link->handshake(hs, std::chrono::milliseconds(std::max<uint64_t>(left_ms, 1)));
    if (s.ok()) return link;
    if (hs.failed() ||
        monotonic_ns() + static_cast<uint64_t>(std::chrono::nanoseconds(backoff).count()) >=
            deadline)
      return s.error().context(where);
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(400));
  }
}

Result<std::unique_ptr<TcpLink>> TcpLink::accept(tcp::socket socket, const LinkIdentity& me) {
  // The accepted socket belongs to the listener's io_context; the link gets one of its own.
  return accept_fd(socket.release(), me);
}

Result<std::unique_ptr<TcpLink>> TcpLink::accept_fd(int fd, const LinkIdentity& me) {
  auto io = std::make_unique<asio::io_context>();
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  const auto protocol = local.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
  tcp::socket own(*io, protocol, fd);
  std::unique_ptr<TcpLink> link(new TcpLink(std::move(io), std::move(own)));
  Handshake hs(Handshake::Role::kServer, me.node_name, me.secret);
  if (auto s = link->handshake(hs, me.handshake_timeout); !s.ok()) {
    log::warn("refused connection from {}: {}", link->peer_address_, s.error().message());
    return s.error().context("accept from " + link->peer_address_);
  }
  return link;
}

Status TcpLink::write_blocking(const std::vector<uint8_t>& bytes) {
  boost::system::error_code ec;
  asio::write(socket_, asio::buffer(bytes), ec);
  if (ec) return Error("send to " + who() + ": " + ec.message());
  return {};
}

// The handshake's few frames go out with plain blocking writes (bounded by the handshake
// timeout); the writer thread and sealing start once it is done.
Status TcpLink::handshake(Handshake& hs, std::chrono::milliseconds timeout) {
  handshake_deadline_ns_ =
      monotonic_ns() + static_cast<uint64_t>(std::chrono::nanoseconds(timeout).count());
  auto send_all = [&](const std::vector<Frame>& frames) -> Status {
    for (const auto& f : frames) SHOAL_TRY(write_blocking(encode_frame(f)), "handshake");
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
  handshake_deadline_ns_ = 0;
  peer_name_ = hs.peer_name();
  const SessionKeys keys = hs.session_keys();
  {
    std::lock_guard lock(send_mu_);
    sealer_ = std::make_unique<FrameSealer>(keys.send);
    opener_ = std::make_unique<FrameOpener>(keys.receive);
    last_sent_ns_ = monotonic_ns();
  }
  writer_ = std::thread([this] { write_loop(); });
  return {};
}

Status TcpLink::send(const Frame& frame) {
  if (frame.payload.size() > kMaxPayload)
    return Error("frame of " + std::to_string(frame.payload.size()) + " bytes exceeds the limit");
  std::lock_guard lock(send_mu_);
  if (!sealer_) return Error("send to " + who() + ": the link is not authenticated");
  return push_locked(sealer_->seal(frame));
}

Status TcpLink::send_raw_for_test(const std::vector<uint8_t>& bytes) {
  std::lock_guard lock(send_mu_);
  if (!sealer_) return write_blocking(bytes);
  return push_locked(bytes);
}

Status TcpLink::push_locked(std::vector<uint8_t> bytes) {
  if (broken_) return broken_->context("send to " + who());
  if (closed_) return Error("send to " + who() + ": the link is closed");
  last_sent_ns_ = monotonic_ns();
  if (queued_from_ == queued_.size()) {
    // Straight into the socket. MSG_DONTWAIT: the caller may be a link's reader or the
    // fault thread, which must never block on a peer that does not read.
    const ssize_t n =
        ::send(socket_.native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      break_locked(errno_error("send"));
      return broken_->context("send to " + who());
    }
    const size_t sent = n > 0 ? static_cast<size_t>(n) : 0;
    if (sent == bytes.size()) return {};
    queued_.assign(bytes.begin() + static_cast<std::ptrdiff_t>(sent), bytes.end());
    queued_from_ = 0;
  } else {
    queued_.insert(queued_.end(), bytes.begin(), bytes.end());
    if (queued_.size() - queued_from_ > kMaxQueuedBytes) {
      break_locked(Error("more than " + std::to_string(kMaxQueuedBytes >> 20) +
                         " MiB waiting to be sent: the peer does not read"));
      return broken_->context("send to " + who());
    }
  }
  send_cv_.notify_all();
  return {};
}

void TcpLink::flush_locked() {
  while (queued_from_ < queued_.size() && !closed_) {
    const ssize_t n = ::send(socket_.native_handle(), queued_.data() + queued_from_,
                             queued_.size() - queued_from_, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) break_locked(errno_error("send"));
      return;
    }
    queued_from_ += static_cast<size_t>(n);
  }
  if (queued_from_ == queued_.size()) {
    queued_.clear();
    queued_from_ = 0;
    send_cv_.notify_all();  // finish() waits for an empty queue
  }
}

void TcpLink::break_locked(Error why) {
  if (!broken_ && !closed_) broken_ = std::move(why);
  closed_ = true;
  // Wakes the reader (its read fails, and receive() reports broken_) and the writer.
  ::shutdown(socket_.native_handle(), SHUT_RDWR);
  send_cv_.notify_all();
}

void TcpLink::write_loop() {
  std::unique_lock lock(send_mu_);
  while (!closed_) {
    const auto timeout = failure_timeout_;
    if (queued_from_ == queued_.size()) {
      if (timeout.count() == 0)
        send_cv_.wait(lock);
      else
        send_cv_.wait_for(lock, heartbeat_period(timeout) / 2);
    }
    if (closed_) break;
    if (timeout.count() > 0) {
      const uint64_t now = monotonic_ns();
      if (auto silent = silent_peer(now, reader_waiting_since_ns_.load(), timeout)) {
        break_locked(std::move(*silent));
        break;
      }
      if (heartbeat_due(now, last_sent_ns_, timeout) && queued_from_ == queued_.size())
        (void)push_locked(sealer_->seal(Frame{MessageType::kHeartbeat, 0, {}}));
    }
    if (queued_from_ < queued_.size()) {
      // Wait for room without the lock, so senders keep queueing meanwhile.
      lock.unlock();
      pollfd p{socket_.native_handle(), POLLOUT, 0};
      (void)::poll(&p, 1, 50);
      lock.lock();
      flush_locked();
    }
  }
}

void TcpLink::watch_liveness(std::chrono::milliseconds timeout) {
  std::lock_guard lock(send_mu_);
  failure_timeout_ = timeout;
  send_cv_.notify_all();
}

void TcpLink::finish(std::chrono::milliseconds timeout) {
  std::unique_lock lock(send_mu_);
  send_cv_.wait_for(lock, timeout, [&] { return closed_ || queued_from_ == queued_.size(); });
  if (!closed_) ::shutdown(socket_.native_handle(), SHUT_WR);
}

Result<Frame> TcpLink::read_frame() {
  for (;;) {
    if (auto f = decoder_.next()) return *f;
    if (decoder_.error()) return *decoder_.error();
    uint8_t buf[64 * 1024];
    boost::system::error_code ec;
    if (handshake_deadline_ns_ != 0) {
      // The handshake has a deadline for the whole exchange, so a peer that trickles bytes
      // cannot hold the connection. (SO_RCVTIMEO would not do: asio's blocking read polls
      // again after the EAGAIN it causes.)
      const uint64_t now = monotonic_ns();
      pollfd p{socket_.native_handle(), POLLIN, 0};
      if (now >= handshake_deadline_ns_ ||
          ::poll(&p, 1, static_cast<int>((handshake_deadline_ns_ - now + 999'999) / 1'000'000)) ==
              0)
        return Error("no handshake within the deadline");
    }
    reader_waiting_since_ns_ = monotonic_ns();
    const size_t n = socket_.read_some(asio::buffer(buf), ec);
    reader_waiting_since_ns_ = 0;
    if (ec == asio::error::eof)
      return Error(decoder_.buffered() > 0 ? "peer closed the connection mid-frame"
                                           : "peer closed the connection");
    if (ec) return Error("receive: " + ec.message());
    SHOAL_TRY(decoder_.feed(std::span<const uint8_t>(buf, n)), "receive");
  }
}

Result<Frame> TcpLink::receive() {
  for (;;) {
    auto f = read_frame();
    if (f && opener_) f = opener_->open(*f);
    if (!f) {
      std::lock_guard lock(send_mu_);
      // The writer broke the link (silence, a full queue): that is the cause, not the EOF.
      // Callers name the peer ("lost host h1: no heartbeat for 1.0 s").
      if (broken_) return *broken_;
      return f.error();
    }
    if (f->type != MessageType::kHeartbeat) return f;
  }
}

std::string TcpLink::local_ip() const {
  boost::system::error_code ec;
  const auto ep = socket_.local_endpoint(ec);
  return ec ? std::string() : ep.address().to_string();
}

void TcpLink::close() {
  std::lock_guard lock(send_mu_);
  closed_ = true;
  ::shutdown(socket_.native_handle(), SHUT_RDWR);
  send_cv_.notify_all();
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

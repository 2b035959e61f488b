// Link over TCP (Boost.Asio). Connecting or accepting includes the pod-secret handshake: a
// TcpLink exists only for an authenticated peer, and every frame after the handshake is
// encrypted and authenticated (net/frame_cipher.hpp).
//
// Sending never blocks: a frame goes straight into the socket when it takes it (the common
// case, no thread hand-off on the fault path), and otherwise waits, in order, in the link's
// queue for its writer thread; more than kMaxQueuedBytes waiting breaks the link. The writer
// thread also keeps the link alive: with watch_liveness(T) it sends a heartbeat every
// min(T/4, 100 ms) and breaks the link when nothing has arrived for T. A broken link's receive()
// fails with why.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility> (C++20).
#include <utility>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/frame_cipher.hpp"
#include "net/handshake.hpp"
#include "net/link.hpp"

namespace shoal::net {

struct LinkIdentity {
  std::string node_name;
  std::vector<uint8_t> secret;
  std::chrono::milliseconds handshake_timeout{5000};
};

// What a link may hold unsent before it counts as broken (its peer no longer reads).
inline constexpr size_t kMaxQueuedBytes = 64u << 20;

class TcpLink : public Link {
 public:
  static Result<std::unique_ptr<TcpLink>> connect(const std::string& host, uint16_t port,
                                                  const LinkIdentity& me);
  // Authenticates a socket the listener accepted. A peer that fails gets nothing more than
  // the handshake's own messages, and the attempt is logged.
  static Result<std::unique_ptr<TcpLink>> accept(boost::asio::ip::tcp::socket socket,
                                                 const LinkIdentity& me);
  // The same for a bare connected socket descriptor, which the link then owns.
  static Result<std::unique_ptr<TcpLink>> accept_fd(int fd, const LinkIdentity& me);
  ~TcpLink() override;

  Status send(const Frame& frame) override;
  Result<Frame> receive() override;
  // Wakes the reader and the writer, ends the connection; what is still queued is dropped.
  void close() override;
  void finish(std::chrono::milliseconds timeout) override;
  void watch_liveness(std::chrono::milliseconds timeout) override;
  const std::string& peer_name() const override { return peer_name_; }
  // This end's IP address ("127.1.0.1"): the RDMA link finds its GID from it.
  std::string local_ip() const;
  // Writes bytes as they are, unframed: for tests of how the other end copes with garbage.
  Status send_raw_for_test(const std::vector<uint8_t>& bytes);

 private:
  TcpLink(std::unique_ptr<boost::asio::io_context> io, boost::asio::ip::tcp::socket socket);
  Status handshake(Handshake& hs, std::chrono::milliseconds timeout);
  Status write_blocking(const std::vector<uint8_t>& bytes);
  Result<Frame> read_frame();
  // Under send_mu_.
  Status push_locked(std::vector<uint8_t> bytes);
  void flush_locked();
  void break_locked(Error why);
  const std::string& who() const { return peer_name_.empty() ? peer_address_ : peer_name_; }
  void write_loop();

  std::unique_ptr<boost::asio::io_context> io_;
  boost::asio::ip::tcp::socket socket_;
  FrameDecoder decoder_;
  std::mutex send_mu_;  // the queue, the sealer (its count is the nonce), the state below
  std::condition_variable send_cv_;
  std::vector<uint8_t> queued_;  // bytes the socket has not taken yet, from queued_from_
  size_t queued_from_ = 0;
  bool closed_ = false;
  std::optional<Error> broken_;  // why the link ended, first cause only
  std::chrono::nanoseconds failure_timeout_{0};
  uint64_t last_sent_ns_ = 0;
  // When the reader started waiting in read (0: it is not waiting, e.g. busy with a frame).
  std::atomic<uint64_t> reader_waiting_since_ns_{0};
  std::thread writer_;
  uint64_t handshake_deadline_ns_ = 0;  // while the handshake runs (reader's thread only)
  // Set once the handshake is done; from then on every frame is sealed and opened.
  std::unique_ptr<FrameSealer> sealer_;
  std::unique_ptr<FrameOpener> opener_;
  std::string peer_name_;
  std::string peer_address_;
};

// Accepts connections on HOST:PORT (port 0: any; see port()).
class TcpListener {
 public:
  static Result<std::unique_ptr<TcpListener>> listen(const std::string& host, uint16_t port);
  uint16_t port() const;
  // Blocks for the next TCP connection (not yet authenticated).
  Result<boost::asio::ip::tcp::socket> accept();
  void close();

 private:
  TcpListener() = default;
  std::unique_ptr<boost::asio::io_context> io_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
};

}  // namespace shoal::net

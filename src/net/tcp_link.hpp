// Link over TCP (Boost.Asio, blocking calls on the caller's thread). Connecting or accepting
// includes the pod-secret handshake: a TcpLink exists only for an authenticated peer.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility> (C++20).
#include <utility>

#include <boost/asio.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "net/handshake.hpp"
#include "net/link.hpp"

namespace shoal::net {

struct LinkIdentity {
  std::string node_name;
  std::vector<uint8_t> secret;
  std::chrono::milliseconds handshake_timeout{5000};
};

class TcpLink : public Link {
 public:
  static Result<std::unique_ptr<TcpLink>> connect(const std::string& host, uint16_t port,
                                                  const LinkIdentity& me);
  // Authenticates a socket the listener accepted. A peer that fails gets nothing more than
  // the handshake's own messages, and the attempt is logged.
  static Result<std::unique_ptr<TcpLink>> accept(boost::asio::ip::tcp::socket socket,
                                                 const LinkIdentity& me);
  ~TcpLink() override;

  Status send(const Frame& frame) override;
  Result<Frame> receive() override;
  void close() override;
  const std::string& peer_name() const override { return peer_name_; }
  // Writes bytes as they are, unframed: for tests of how the other end copes with garbage.
  Status send_raw_for_test(const std::vector<uint8_t>& bytes);

 private:
  TcpLink(std::unique_ptr<boost::asio::io_context> io, boost::asio::ip::tcp::socket socket);
  Status handshake(Handshake& hs);
  Result<Frame> read_frame();

  std::unique_ptr<boost::asio::io_context> io_;
  boost::asio::ip::tcp::socket socket_;
  FrameDecoder decoder_;
  std::mutex send_mu_;
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

// One authenticated, framed connection to another node. The protocol code (coherence,
// forwarded exits, pod control) talks to a Link and never to a socket, so the RDMA verbs
// transport can be added as another Link without touching it.
#pragma once

#include <chrono>

#include "net/frame.hpp"
#include "shoal/status.hpp"

namespace shoal::net {

class Link {
 public:
  virtual ~Link() = default;
  // Sends one frame; safe from several threads. Fails once the link is broken.
  virtual Status send(const Frame& frame) = 0;
  // Blocks for the next frame. Fails when the peer closes (also mid-frame), sends a malformed
  // or oversized frame, or the link was closed.
  virtual Result<Frame> receive() = 0;
  virtual void close() = 0;
  // Delivers what was sent (waiting at most `timeout`), then ends this direction: the peer
  // reads every frame sent before. Receiving goes on until close().
  virtual void finish(std::chrono::milliseconds timeout) = 0;
  // Heartbeats both ways: a link that hears nothing for `timeout` breaks ("no heartbeat for
  // 1.0 s"), and this end sends one every min(timeout / 4, 100 ms) while it has nothing else
  // to send.
  virtual void watch_liveness(std::chrono::milliseconds timeout) = 0;
  virtual const std::string& peer_name() const = 0;
};

}  // namespace shoal::net

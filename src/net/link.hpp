// One authenticated, framed connection to another node. The protocol code (coherence,
// forwarded exits, pod control) talks to a Link and never to a socket, so the RDMA verbs
// transport can be added as another Link without touching it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>

#include "net/frame.hpp"
#include "shoal/status.hpp"

namespace shoal::net {

// A watching end sends a heartbeat every min(timeout / 4, this); so any timeout of 500 ms or
// more is met by every peer, whatever timeout that peer watches with.
inline constexpr std::chrono::milliseconds kMaxHeartbeatPeriod{100};

// Every end that watches at all sends at least this often, whatever its own timeout: the two
// ends of a link may watch with different timeouts (a node's control link and `pod up`), and
// neither may go quiet for longer than the stricter one allows.
inline std::chrono::nanoseconds heartbeat_period(std::chrono::nanoseconds timeout) {
  return std::min<std::chrono::nanoseconds>(timeout / 4, kMaxHeartbeatPeriod);
}

// What a link's writer decides about the peer at `now` (monotonic ns), for both transports.
// Silence counts only while the reader waits for bytes (`reader_waiting_since`, 0 when it does
// not): a reader busy with a frame (a long local operation) says nothing about the peer, whose
// bytes wait unread. The reader may have started waiting after `now` was read.
inline std::optional<Error> silent_peer(uint64_t now, uint64_t reader_waiting_since,
                                        std::chrono::nanoseconds timeout) {
  const auto timeout_ns = static_cast<uint64_t>(timeout.count());
  if (reader_waiting_since == 0 || now <= reader_waiting_since ||
      now - reader_waiting_since <= timeout_ns)
    return std::nullopt;
  char text[64];
  std::snprintf(text, sizeof text, "no heartbeat for %.1f s",
                static_cast<double>(timeout.count()) / 1e9);
  return Error(text);
}

// Whether a heartbeat is due: nothing was sent for a heartbeat period.
inline bool heartbeat_due(uint64_t now, uint64_t last_sent, std::chrono::nanoseconds timeout) {
  return now - last_sent >= static_cast<uint64_t>(heartbeat_period(timeout).count());
}

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

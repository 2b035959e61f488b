// Link over RDMA verbs (libibverbs): one reliable-connected queue pair per peer.
//
// Set-up. Two nodes first make an ordinary TcpLink (the pod-secret handshake, encrypted), then
// upgrade it: each sends its queue pair's endpoint (net/rdma_wire.hpp) over it, brings the
// queue pair to RTS, and the connecting side confirms. Not rdma_cm: it refuses the loopback
// addresses (127.0.0.0/8) pods use in tests ("rdma_resolve_route: No such device"), and the
// TCP link already authenticates the peer and carries the exchange sealed. The TCP link stays
// open, idle, as the side channel that ends the link when the peer's process ends (its FIN).
//
// Frames. The same byte stream as over TCP (sealed frames, FrameDecoder), cut into SENDs of at
// most one receive slot. Each side posts `slots` receive slots and tells the peer, by an RDMA
// WRITE into a registered word of the peer's (no receive slot used, so it cannot deadlock), how
// many it has posted in all; a sender posts a SEND only while it has credit (posted by the
// peer minus sent). So a SEND always finds a posted slot: an RNR NAK would be a bug, and the
// queue pair is made with rnr_retry 0 so that it fails loudly instead of retrying in a storm.
//
// Threads. send() posts straight from the caller's thread when there is credit (the fault
// path: no hand-off); otherwise the bytes wait, in order, for the writer thread, which also
// sends heartbeats and watches silence as TcpLink does. receive() runs on one reader thread:
// it polls the receive completion queue, spinning a bounded while, then sleeps on the
// completion channel. A watcher thread waits on the TCP side channel.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/frame_cipher.hpp"
#include "net/link.hpp"
#include "net/rdma_device.hpp"
#include "net/rdma_wire.hpp"
#include "net/tcp_link.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal::net {

struct RdmaLinkConfig {
  uint32_t slots = 32;              // receive slots posted for the peer, and send slots
  uint32_t slot_bytes = 32u << 10;  // a 4 KiB page's frame fits one; a batch takes several
  bool sealed = true;               // AES-256-GCM on every frame, as over TCP (docs/security.md)
  // Silence during the set-up that ends it (heartbeats run both ways meanwhile).
  std::chrono::milliseconds setup_timeout{10000};
  // This host's IP address, whose RoCE GID the queue pair uses (a pod member's spec address).
  // Empty: the TCP link's own end.
  std::string local_address;
};

// Registered memory of a link: the credit word's page, then the slots.
inline constexpr size_t kCreditPageBytes = 4096;

struct RdmaLinkStats {
  uint64_t sends = 0;          // SENDs posted
  uint64_t bytes = 0;          // stream bytes those SENDs carried
  uint64_t credit_writes = 0;  // RDMA WRITEs of the posted-slot count
  uint64_t credit_waits = 0;   // times a sender found no credit and left bytes to the writer
};

class RdmaLink : public Link {
 public:
  // Both ends call this on their TcpLink once nothing more is to go over TCP (the connecting
  // side with `connecting`). Errors name the step ("RDMA link to h1: modify QP to RTR: ...").
  static Result<std::unique_ptr<RdmaLink>> upgrade(std::shared_ptr<TcpLink> control,
                                                   std::shared_ptr<RdmaDevice> device,
                                                   bool connecting, const RdmaLinkConfig& config);
  ~RdmaLink() override;
  RdmaLink(const RdmaLink&) = delete;
  RdmaLink& operator=(const RdmaLink&) = delete;

  Status send(const Frame& frame) override;
  Result<Frame> receive() override;
  void close() override;
  // As TcpLink: delivers what was sent, then ends this direction (the peer's receive() ends
  // with "peer closed the connection" once it has read everything); the peer may still send.
  void finish(std::chrono::milliseconds timeout) override;
  void watch_liveness(std::chrono::milliseconds timeout) override;
  const std::string& peer_name() const override { return control_->peer_name(); }
  RdmaLinkStats stats();

 private:
  RdmaLink(std::shared_ptr<TcpLink> control, std::shared_ptr<RdmaDevice> device,
           const RdmaLinkConfig& config);
  // Set-up (rdma_link_setup.cc).
  Status create_queue_pair();
  Status post_receive(uint32_t slot);
  Status connect_to(const RdmaEndpoint& peer, int gid_index);
  RdmaEndpoint endpoint(const std::array<uint8_t, 16>& gid);
  void start_threads();
  // Data path (rdma_link.cc). *_locked: under send_mu_.
  Status push_locked(const std::vector<uint8_t>& bytes);
  void pump_locked();
  void reap_sends_locked();
  void post_credit_locked();
  uint64_t credits_locked() const;
  void break_locked(Error why);
  Status wait_for_receives();
  Status take_receives(int max);
  void write_loop();
  void watch_control();
  void wake_reader();
  const std::string& who() const { return control_->peer_name(); }
  uint8_t* slots_base() const { return region_.base + kCreditPageBytes; }

  std::shared_ptr<TcpLink> control_;
  std::shared_ptr<RdmaDevice> device_;
  RdmaLinkConfig config_;
  // Peer's side, from its endpoint.
  uint32_t peer_slots_ = 0;
  uint32_t peer_slot_bytes_ = 0;
  uint64_t peer_credit_addr_ = 0;
  uint32_t peer_credit_rkey_ = 0;
  std::array<uint8_t, 32> send_key_{};
  std::array<uint8_t, 32> receive_key_{};
  uint32_t psn_ = 0;

  // Verbs objects, in creation order: members are destroyed in reverse (the QP first).
  struct Region {
    uint8_t* base = nullptr;
    size_t bytes = 0;
    ~Region();
  };
  Region region_;  // the credit word the peer writes (own page) | receive slots | send slots
  VerbsPtr<ibv_mr> data_mr_;
  VerbsPtr<ibv_mr> credit_mr_;
  VerbsPtr<ibv_comp_channel> channel_;
  VerbsPtr<ibv_cq> recv_cq_;
  VerbsPtr<ibv_cq> send_cq_;
  VerbsPtr<ibv_qp> qp_;
  UniqueFd wake_;  // eventfd: close() and a lost side channel wake a sleeping reader

  std::mutex send_mu_;  // the send queue, the SQ, the sealer (its count is the nonce), state
  std::condition_variable send_cv_;
  std::vector<uint8_t> queued_;
  size_t queued_from_ = 0;
  uint64_t sends_posted_ = 0;
  uint64_t sends_done_ = 0;
  uint32_t credit_writes_in_flight_ = 0;
  uint64_t credit_to_publish_ = 0;  // receive slots posted in all, for the peer's credit
  uint64_t credit_published_ = 0;
  bool closed_ = false;
  bool finished_ = false;  // finish() ended this direction
  bool qp_errored_ = false;
  std::optional<Error> broken_;
  std::optional<Error> peer_gone_;  // the side channel ended: the peer's link is closed
  std::chrono::nanoseconds failure_timeout_{0};
  uint64_t last_sent_ns_ = 0;
  RdmaLinkStats stats_;
  std::unique_ptr<FrameSealer> sealer_;
  std::atomic<uint64_t> reader_waiting_since_ns_{0};
  // Set by the reader when the peer's end-of-stream frame was read (it sends nothing more);
  // the watcher reads it to word the side channel's end.
  std::atomic<bool> peer_finished_{false};

  // Reader's own.
  FrameDecoder decoder_;
  std::unique_ptr<FrameOpener> opener_;
  uint64_t receives_posted_ = 0;

  std::thread writer_;
  std::thread watcher_;
};

}  // namespace shoal::net

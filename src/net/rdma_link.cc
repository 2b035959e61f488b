// RdmaLink's data path: SENDs under credit, the credit WRITEs, the reader's completion
// polling, the writer's heartbeats, and the TCP side channel's watch (net/rdma_link.hpp).
#include "net/rdma_link.hpp"

#include <poll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cstring>

#include "shoal/clock.hpp"
#include "shoal/log.hpp"

namespace shoal::net {

namespace {

constexpr uint64_t kCreditTag = 1ull << 32;  // a work request id: a credit WRITE, not a slot
constexpr uint32_t kMaxCreditWritesInFlight = 4;
// Completions the reader polls for before it sleeps on the completion channel: a reply that is
// a round trip away (a page request) comes back within this, without a wake-up's cost.
constexpr int kReceiveSpins = 2000;

// Posts one work request with one scatter entry; returns 0 or ibv_post_send's error number.
int post_one(ibv_qp* qp, uint64_t wr_id, ibv_wr_opcode opcode, ibv_sge sge, unsigned flags = 0,
             uint64_t remote_addr = 0, uint32_t rkey = 0) {
  ibv_send_wr wr{};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = opcode;
  wr.send_flags = flags;
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = rkey;
  return ibv_post_send(qp, &wr, &bad);
}

Error wc_error(const char* what, const ibv_wc& wc) {
  return Error(std::string("RDMA ") + what + ": " + ibv_wc_status_str(wc.status));
}

}  // namespace

RdmaLink::~RdmaLink() {
  // A link whose set-up failed has no threads and owes its peer no end of stream.
  if (writer_.joinable()) finish(std::chrono::milliseconds(1000));
  close();
  if (writer_.joinable()) writer_.join();
  if (watcher_.joinable()) watcher_.join();
  if (qp_) {
    // Flush what is still posted before the queue pair and its buffers go.
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_ERR;
    (void)ibv_modify_qp(qp_.get(), &a, IBV_QP_STATE);
  }
}

uint64_t RdmaLink::credits_locked() const {
  // The peer RDMA-WRITEs this word; it only grows.
  const uint64_t posted =
      __atomic_load_n(static_cast<const uint64_t*>(credit_mr_->addr), __ATOMIC_ACQUIRE);
  return posted > sends_posted_ ? posted - sends_posted_ : 0;
}

Status RdmaLink::send(const Frame& frame) {
  if (frame.payload.size() > kMaxPayload)
    return Error("frame of " + std::to_string(frame.payload.size()) + " bytes exceeds the limit");
  std::lock_guard lock(send_mu_);
  if (finished_) return Error("send to " + who() + ": this end has finished sending");
  return push_locked(sealer_ ? sealer_->seal(frame) : encode_frame(frame));
}

Status RdmaLink::push_locked(const std::vector<uint8_t>& bytes) {
  if (broken_) return broken_->context("send to " + who());
  if (closed_) return Error("send to " + who() + ": the link is closed");
  if (peer_gone_) return peer_gone_->context("send to " + who());
  last_sent_ns_ = monotonic_ns();
  if (queued_from_ == queued_.size()) {
    queued_.clear();
    queued_from_ = 0;
  }
  queued_.insert(queued_.end(), bytes.begin(), bytes.end());
  if (queued_.size() - queued_from_ > kMaxQueuedBytes) {
    break_locked(Error("more than " + std::to_string(kMaxQueuedBytes >> 20) +
                       " MiB waiting to be sent: the peer does not read"));
    return broken_->context("send to " + who());
  }
  pump_locked();
  if (broken_) return broken_->context("send to " + who());
  if (queued_from_ < queued_.size()) {
    ++stats_.credit_waits;
    send_cv_.notify_all();  // the writer posts the rest as credit comes back
  }
  return {};
}

void RdmaLink::reap_sends_locked() {
  ibv_wc wc[16];
  int n = 0;
  while ((n = ibv_poll_cq(send_cq_.get(), 16, wc)) > 0) {
    for (int i = 0; i < n; ++i) {
      if (wc[i].status != IBV_WC_SUCCESS) {
        break_locked(wc_error(wc[i].wr_id == kCreditTag ? "credit write" : "send", wc[i]));
        continue;
      }
      if (wc[i].wr_id == kCreditTag)
        --credit_writes_in_flight_;
      else
        ++sends_done_;
    }
  }
  if (n < 0) break_locked(Error("RDMA: poll the send completion queue failed"));
}

void RdmaLink::pump_locked() {
  reap_sends_locked();
  const size_t chunk = std::min(config_.slot_bytes, peer_slot_bytes_);
  while (!broken_ && !closed_ && queued_from_ < queued_.size() && credits_locked() > 0 &&
         sends_posted_ - sends_done_ < config_.slots) {
    const size_t n = std::min(chunk, queued_.size() - queued_from_);
    const uint32_t slot = static_cast<uint32_t>(sends_posted_ % config_.slots);
    uint8_t* buf = slots_base() + (size_t{config_.slots} + slot) * config_.slot_bytes;
    std::memcpy(buf, queued_.data() + queued_from_, n);
    const ibv_sge sge{reinterpret_cast<uintptr_t>(buf), static_cast<uint32_t>(n), data_mr_->lkey};
    if (int rc = post_one(qp_.get(), slot, IBV_WR_SEND, sge); rc != 0) {
      break_locked(errno_error("RDMA post send", rc));
      return;
    }
    ++sends_posted_;
    ++stats_.sends;
    stats_.bytes += n;
    queued_from_ += n;
  }
  if (queued_from_ == queued_.size() && sends_done_ == sends_posted_) send_cv_.notify_all();
  post_credit_locked();
}

void RdmaLink::post_credit_locked() {
  if (credit_to_publish_ == credit_published_ || broken_ || closed_ ||
      credit_writes_in_flight_ >= kMaxCreditWritesInFlight)
    return;
  const uint64_t value = credit_to_publish_;
  const ibv_sge sge{reinterpret_cast<uintptr_t>(&value), sizeof value, 0};
  // Inline: copied at post time, so `value` may go out of scope.
  if (int rc = post_one(qp_.get(), kCreditTag, IBV_WR_RDMA_WRITE, sge, IBV_SEND_INLINE,
                        peer_credit_addr_, peer_credit_rkey_);
      rc != 0) {
    break_locked(errno_error("RDMA post credit write", rc));
    return;
  }
  ++credit_writes_in_flight_;
  ++stats_.credit_writes;
  credit_published_ = value;
}

void RdmaLink::break_locked(Error why) {
  if (!broken_ && !closed_) broken_ = std::move(why);
  closed_ = true;
  send_cv_.notify_all();
  wake_reader();
  if (qp_errored_) return;  // flushed completions come back here, one per work request
  qp_errored_ = true;
  // Tell the peer at once, as a TCP link's shutdown does: its side channel ends. And stop
  // taking its SENDs: an errored queue pair acknowledges nothing more.
  control_->close();
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_ERR;
  (void)ibv_modify_qp(qp_.get(), &a, IBV_QP_STATE);
}

void RdmaLink::wake_reader() {
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

Status RdmaLink::take_receives(int max) {
  ibv_wc wc[16];
  const int want = std::min(max, 16);
  const int n = ibv_poll_cq(recv_cq_.get(), want, wc);
  // Any failure here ends the link, for both ends (break_locked).
  auto fail = [&](Error why) {
    std::lock_guard lock(send_mu_);
    if (broken_) return *broken_;
    if (closed_) return Error("the link is closed");  // slots flushed by a local close
    break_locked(why);
    return why;
  };
  if (n < 0) return fail(Error("RDMA: poll the receive completion queue failed"));
  for (int i = 0; i < n; ++i) {
    if (wc[i].status != IBV_WC_SUCCESS) return fail(wc_error("receive", wc[i]));
    const auto slot = static_cast<uint32_t>(wc[i].wr_id);
    const uint8_t* p = slots_base() + size_t{slot} * config_.slot_bytes;
    if (auto st = decoder_.feed(std::span<const uint8_t>(p, wc[i].byte_len)); !st.ok())
      return fail(st.error().context("receive"));
    if (auto st = post_receive(slot); !st.ok()) return fail(st.error().context("repost a slot"));
    ++receives_posted_;
  }
  if (n > 0) {
    // Credit goes back in batches, and at once when the peer may be waiting for it: when it
    // has used a quarter of its slots, or when this poll emptied the queue.
    std::lock_guard lock(send_mu_);
    credit_to_publish_ = receives_posted_;
    if (credit_to_publish_ - credit_published_ >= std::max(1u, config_.slots / 4) || n < want) {
      reap_sends_locked();
      post_credit_locked();
      if (credit_to_publish_ != credit_published_) send_cv_.notify_all();
    }
  }
  return {};
}

Status RdmaLink::wait_for_receives() {
  const uint64_t before = receives_posted_;
  for (int i = 0; i < kReceiveSpins; ++i) {
    SHOAL_TRY(take_receives(16), "");
    if (receives_posted_ != before) return {};
  }
  // The writer counts silence from here until something arrives (not from each wake-up).
  struct Waiting {
    std::atomic<uint64_t>& since;
    explicit Waiting(std::atomic<uint64_t>& s) : since(s) { since = monotonic_ns(); }
    ~Waiting() { since = 0; }
  } waiting(reader_waiting_since_ns_);
  for (;;) {
    // The peer's end is read before the poll: what it sent before it ended was in this
    // completion queue by then (soft-RoCE posts a receive's completion before it acknowledges
    // the SEND), and a dead peer's last frames are read before its end is reported.
    bool peer_ended = false;
    {
      std::lock_guard lock(send_mu_);
      if (broken_) return *broken_;
      if (closed_) return Error("the link is closed");
      peer_ended = peer_gone_.has_value();
    }
    if (int rc = ibv_req_notify_cq(recv_cq_.get(), 0); rc != 0) {
      std::lock_guard lock(send_mu_);
      break_locked(errno_error("RDMA: arm the completion queue", rc));
      return *broken_;
    }
    // A completion that came between the last poll and the arming raises no event.
    SHOAL_TRY(take_receives(16), "");
    if (receives_posted_ != before) return {};
    if (peer_ended) {
      std::lock_guard lock(send_mu_);
      return *peer_gone_;
    }
    pollfd p[2] = {{channel_->fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    const int r = ::poll(p, 2, 100);
    if (r > 0 && (p[0].revents & POLLIN)) {
      ibv_cq* cq = nullptr;
      void* ctx = nullptr;
      if (ibv_get_cq_event(channel_.get(), &cq, &ctx) == 0) ibv_ack_cq_events(cq, 1);
    }
    if (r > 0 && (p[1].revents & POLLIN)) {
      uint64_t v = 0;
      (void)!::read(wake_.get(), &v, sizeof v);
    }
  }
}

Result<Frame> RdmaLink::receive() {
  for (;;) {
    if (peer_finished_) return Error("peer closed the connection");
    if (auto f = decoder_.next()) {
      Result<Frame> frame = *f;
      if (opener_) frame = opener_->open(*f);
      if (!frame) {
        std::lock_guard lock(send_mu_);
        break_locked(frame.error());
        return frame.error();
      }
      if (frame->type == MessageType::kHeartbeat) continue;
      if (frame->type == MessageType::kRdmaFinish) {
        // In-band, after every frame the peer sent: the end of its direction.
        peer_finished_ = true;
        continue;
      }
      return frame;
    }
    if (decoder_.error()) return *decoder_.error();
    if (auto s = wait_for_receives(); !s.ok()) {
      // A peer that ended in the middle of a frame: say so.
      if (decoder_.buffered() > 0 &&
          s.error().message().find("peer closed the connection") != std::string::npos)
        return Error(s.error().message() + " mid-frame");
      return s.error();
    }
  }
}

void RdmaLink::write_loop() {
  std::unique_lock lock(send_mu_);
  int idle_polls = 0;
  while (!closed_) {
    const auto timeout = failure_timeout_;
    const bool waiting = queued_from_ < queued_.size() || sends_done_ != sends_posted_ ||
                         credit_to_publish_ != credit_published_;
    if (!waiting) {
      idle_polls = 0;
      if (timeout.count() == 0)
        send_cv_.wait(lock);
      else
        send_cv_.wait_for(lock, heartbeat_period(timeout) / 2);
    } else {
      // Credit arrives as a remote WRITE, which raises nothing here: poll for it, yielding
      // first, then sleeping 50 us at a time.
      lock.unlock();
      if (++idle_polls < 64)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      lock.lock();
    }
    if (closed_) break;
    pump_locked();
    const auto watch = failure_timeout_;  // watch_liveness may have changed it meanwhile
    if (watch.count() > 0 && !closed_) {
      const uint64_t now = monotonic_ns();
      if (auto silent = silent_peer(now, reader_waiting_since_ns_.load(), watch)) {
        break_locked(std::move(*silent));
        break;
      }
      // Nothing after the end of stream, not even a heartbeat.
      if (!finished_ && heartbeat_due(now, last_sent_ns_, watch) &&
          queued_from_ == queued_.size()) {
        const Frame beat{MessageType::kHeartbeat, 0, {}};
        (void)push_locked(sealer_ ? sealer_->seal(beat) : encode_frame(beat));
      }
    }
  }
}

void RdmaLink::watch_control() {
  // After the set-up nothing comes over TCP: any frame is a protocol error, and the end of the
  // connection is the end of the peer's link (its close(), or its process). After its finish
  // marker (in-band) that is an orderly close; before it, the peer is gone.
  auto f = control_->receive();
  std::lock_guard lock(send_mu_);
  if (f)
    break_locked(Error("unexpected message type " + std::to_string(static_cast<int>(f->type)) +
                       " on the RDMA link's TCP side channel"));
  else if (!closed_)
    peer_gone_ = peer_finished_ ? f.error() : f.error().context("the peer ended without finishing");
  wake_reader();
}

void RdmaLink::watch_liveness(std::chrono::milliseconds timeout) {
  std::lock_guard lock(send_mu_);
  failure_timeout_ = timeout;
  send_cv_.notify_all();
}

void RdmaLink::finish(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(send_mu_);
  if (closed_ || finished_ || peer_gone_) return;
  auto delivered = [&] {
    return closed_ || peer_gone_ ||
           (queued_from_ == queued_.size() && sends_done_ == sends_posted_);
  };
  send_cv_.notify_all();
  if (!send_cv_.wait_until(lock, deadline, delivered)) {
    // Not an orderly end: the peer must not take the stream as complete.
    break_locked(Error("finish: " + std::to_string(queued_.size() - queued_from_) + " bytes and " +
                       std::to_string(sends_posted_ - sends_done_) +
                       " SENDs not delivered within " + std::to_string(timeout.count()) + " ms"));
    return;
  }
  if (closed_ || peer_gone_) return;
  // The end of stream goes in-band, as the last SEND: the peer reads it after every frame
  // before it, whatever the fabric's ordering of completions and acknowledgements. The TCP
  // side channel stays open until close(): the peer may still send this way.
  const Frame end{MessageType::kRdmaFinish, 0, {}};
  (void)push_locked(sealer_ ? sealer_->seal(end) : encode_frame(end));
  finished_ = true;
  send_cv_.wait_until(lock, deadline, delivered);
}

void RdmaLink::close() {
  {
    std::lock_guard lock(send_mu_);
    closed_ = true;
    send_cv_.notify_all();
  }
  control_->close();
  wake_reader();
}

RdmaLinkStats RdmaLink::stats() {
  std::lock_guard lock(send_mu_);
  return stats_;
}

}  // namespace shoal::net

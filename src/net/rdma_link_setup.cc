// RdmaLink's set-up: registered memory, completion queues, the queue pair and its INIT ->
// RTR -> RTS transitions, and the endpoint exchange over the TCP link (docs/rdma.md).
#include <openssl/rand.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <sys/resource.h>

#include <algorithm>
#include <cstring>

#include "net/rdma_link.hpp"
#include "shoal/log.hpp"

namespace shoal::net {

namespace {

// ACK timeout 4.096 us * 2^16 = 268 ms, retried 7 times: a peer that stopped answering breaks
// the link's sends within ~2 s (the heartbeat usually says so first). Generous, because the
// test machines that run soft-RoCE are emulated and stall for tenths of a second.
constexpr uint8_t kAckTimeout = 16;
constexpr uint8_t kRetryCount = 7;

Status modify(ibv_qp* qp, ibv_qp_attr& attr, int mask, const char* state) {
  if (int rc = ibv_modify_qp(qp, &attr, mask); rc != 0)
    return errno_error(std::string("modify QP to ") + state, rc);
  return {};
}

}  // namespace

RdmaLink::Region::~Region() {
  if (base) munmap(base, bytes);
}

RdmaLink::RdmaLink(std::shared_ptr<TcpLink> control, std::shared_ptr<RdmaDevice> device,
                   const RdmaLinkConfig& config)
    : control_(std::move(control)), device_(std::move(device)), config_(config) {}

Result<std::unique_ptr<RdmaLink>> RdmaLink::upgrade(std::shared_ptr<TcpLink> control,
                                                    std::shared_ptr<RdmaDevice> device,
                                                    bool connecting, const RdmaLinkConfig& config) {
  const std::string where = "RDMA link to " + control->peer_name();
  if (config.slots < kMinRdmaSlots || config.slots > kMaxRdmaSlots ||
      config.slot_bytes < kMinRdmaSlotBytes || config.slot_bytes > kMaxRdmaSlotBytes)
    return Error(where + ": " + std::to_string(config.slots) + " slots of " +
                 std::to_string(config.slot_bytes) + " bytes; expected " +
                 std::to_string(kMinRdmaSlots) + " to " + std::to_string(kMaxRdmaSlots) +
                 " slots of " + std::to_string(kMinRdmaSlotBytes) + " to " +
                 std::to_string(kMaxRdmaSlotBytes) + " bytes");
  std::unique_ptr<RdmaLink> link(new RdmaLink(control, std::move(device), config));
  SHOAL_TRY(link->create_queue_pair(), where);
  auto gid_index = link->device_->gid_index_for(
      config.local_address.empty() ? control->local_ip() : config.local_address);
  if (!gid_index) return gid_index.error().context(where);
  auto gid = link->device_->gid(*gid_index);
  if (!gid) return gid.error().context(where);
  const RdmaEndpoint me = link->endpoint(*gid);
  // The exchange waits on the peer: heartbeats both ways bound it.
  control->watch_liveness(config.setup_timeout);
  auto receive_endpoint = [&]() -> Result<RdmaEndpoint> {
    auto f = control->receive();
    if (!f) return f.error();
    return decode_rdma_endpoint(*f);
  };
  auto agree = [&](const RdmaEndpoint& e) -> Status {
    if (e.sealed == config.sealed) return {};
    return Error(std::string(e.sealed ? "the peer seals its RDMA frames and this node does not"
                                      : "this node seals its RDMA frames and the peer does not") +
                 " (both ends must agree)");
  };
  RdmaEndpoint peer;
  if (connecting) {
    SHOAL_TRY(control->send(encode_rdma_endpoint(me)), where + ": send endpoint");
    auto e = receive_endpoint();
    if (!e) return e.error().context(where + ": endpoint");
    peer = *e;
    SHOAL_TRY(agree(peer), where);
    SHOAL_TRY(link->connect_to(peer, *gid_index), where);
    SHOAL_TRY(control->send(Frame{MessageType::kRdmaReady, 0, {}}), where + ": send ready");
  } else {
    auto e = receive_endpoint();
    if (!e) return e.error().context(where + ": endpoint");
    peer = *e;
    // Disagreeing, it still answers, so that the other end names the cause too.
    if (auto s = agree(peer); !s.ok()) {
      (void)control->send(encode_rdma_endpoint(me));
      control->finish(std::chrono::milliseconds(1000));
      return s.error().context(where);
    }
    // Ready to receive before the peer learns the endpoint: its first SEND finds an RTR queue.
    SHOAL_TRY(link->connect_to(peer, *gid_index), where);
    SHOAL_TRY(control->send(encode_rdma_endpoint(me)), where + ": send endpoint");
    auto ready = control->receive();
    if (!ready) return ready.error().context(where + ": ready");
    if (ready->type != MessageType::kRdmaReady)
      return Error(where + ": expected the peer's ready, got message type " +
                   std::to_string(static_cast<int>(ready->type)));
  }
  link->receive_key_ = peer.key;
  if (config.sealed) {
    link->sealer_ = std::make_unique<FrameSealer>(link->send_key_);
    link->opener_ = std::make_unique<FrameOpener>(link->receive_key_);
  }
  control->watch_liveness(std::chrono::milliseconds(0));
  link->start_threads();
  // Both ways over the queue pair itself before the link is handed on: TCP reaching the peer
  // says nothing about RoCE reaching it (another route, a firewall on UDP 4791, no GID).
  link->watch_liveness(config.setup_timeout);
  SHOAL_TRY(link->send(Frame{MessageType::kRdmaReady, 0, {}}), where + ": send ready");
  auto ready = link->receive();
  if (!ready)
    return Error(where + ": the peer is not reachable over RDMA: " + ready.error().message());
  if (ready->type != MessageType::kRdmaReady)
    return Error(where + ": expected the peer's ready over RDMA, got message type " +
                 std::to_string(static_cast<int>(ready->type)));
  link->watch_liveness(std::chrono::milliseconds(0));
  log::debug("{}: queue pair {} on {} up ({} slots of {} KiB each way)", where, link->qp_->qp_num,
             link->device_->name(), config.slots, config.slot_bytes >> 10);
  return link;
}

Status RdmaLink::create_queue_pair() {
  SHOAL_TRY(device_->check_capabilities(config_.slots), "");
  // The credit word first, on a page of its own (aligned for its atomic reads), then the
  // receive slots, then the send slots.
  const size_t data = 2ull * config_.slots * config_.slot_bytes;
  region_.bytes = kCreditPageBytes + data;
  void* p =
      mmap(nullptr, region_.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return errno_error("map the slots");
  region_.base = static_cast<uint8_t*>(p);
  ibv_pd* pd = device_->pd();
  // Registering pins the pages, within RLIMIT_MEMLOCK for a process without CAP_IPC_LOCK.
  auto registration_error = [&](const std::string& what) {
    const int err = errno;
    Error e = errno_error("register " + what, err);
    rlimit lim{};
    if (err == ENOMEM && getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
      return Error(e.message() + " (RLIMIT_MEMLOCK is " + std::to_string(lim.rlim_cur >> 10) +
                   " KiB and each RDMA link pins " + std::to_string(region_.bytes >> 10) +
                   " KiB: raise it with LimitMEMLOCK= or ulimit -l)");
    return e;
  };
  // Only the credit word is open to the peer's writes; the slots take SENDs alone.
  data_mr_.reset(ibv_reg_mr(pd, slots_base(), data, IBV_ACCESS_LOCAL_WRITE));
  if (!data_mr_) return registration_error("the slots");
  credit_mr_.reset(
      ibv_reg_mr(pd, region_.base, 8, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE));
  if (!credit_mr_) return registration_error("the credit word");
  channel_.reset(ibv_create_comp_channel(device_->context()));
  if (!channel_) return errno_error("create a completion channel");
  const int slots = static_cast<int>(config_.slots);
  recv_cq_.reset(ibv_create_cq(device_->context(), slots, nullptr, channel_.get(), 0));
  send_cq_.reset(ibv_create_cq(device_->context(), slots + 8, nullptr, nullptr, 0));
  if (!recv_cq_ || !send_cq_) return errno_error("create completion queues");
  ibv_qp_init_attr init{};
  init.send_cq = send_cq_.get();
  init.recv_cq = recv_cq_.get();
  init.qp_type = IBV_QPT_RC;
  init.sq_sig_all = 1;
  init.cap.max_send_wr = config_.slots + 4;  // data SENDs, plus credit WRITEs in flight
  init.cap.max_recv_wr = config_.slots;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  init.cap.max_inline_data = 8;  // the credit word goes inline
  qp_.reset(ibv_create_qp(pd, &init));
  if (!qp_)
    return errno_error("create a queue pair (RC, " + std::to_string(init.cap.max_send_wr) +
                       " work requests, 8 bytes inline)");
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = device_->port();
  a.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
  SHOAL_TRY(modify(qp_.get(), a,
                   IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS, "INIT"),
            "");
  // Every receive slot is posted before the peer learns of the queue pair.
  for (uint32_t s = 0; s < config_.slots; ++s) SHOAL_TRY(post_receive(s), "post a receive");
  receives_posted_ = config_.slots;
  credit_to_publish_ = credit_published_ = config_.slots;
  wake_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) return errno_error("eventfd");
  uint32_t psn = 0;
  RAND_bytes(reinterpret_cast<uint8_t*>(&psn), sizeof psn);
  psn_ = psn & 0xffffff;
  RAND_bytes(send_key_.data(), static_cast<int>(send_key_.size()));
  return {};
}

Status RdmaLink::post_receive(uint32_t slot) {
  ibv_sge sge{reinterpret_cast<uintptr_t>(slots_base() + size_t{slot} * config_.slot_bytes),
              config_.slot_bytes, data_mr_->lkey};
  ibv_recv_wr wr{};
  ibv_recv_wr* bad = nullptr;
  wr.wr_id = slot;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (int rc = ibv_post_recv(qp_.get(), &wr, &bad); rc != 0)
    return errno_error("ibv_post_recv", rc);
  return {};
}

RdmaEndpoint RdmaLink::endpoint(const std::array<uint8_t, 16>& gid) {
  RdmaEndpoint e;
  e.qpn = qp_->qp_num;
  e.psn = psn_;
  e.gid = gid;
  e.credit_addr = reinterpret_cast<uintptr_t>(credit_mr_->addr);
  e.credit_rkey = credit_mr_->rkey;
  e.recv_slots = config_.slots;
  e.slot_bytes = config_.slot_bytes;
  e.sealed = config_.sealed;
  e.key = send_key_;
  e.mtu = static_cast<uint32_t>(device_->active_mtu());
  return e;
}

Status RdmaLink::connect_to(const RdmaEndpoint& peer, int gid_index) {
  peer_slots_ = peer.recv_slots;
  peer_slot_bytes_ = peer.slot_bytes;
  peer_credit_addr_ = peer.credit_addr;
  peer_credit_rkey_ = peer.credit_rkey;
  // The peer's posted count, before its first WRITE of it can land.
  *static_cast<volatile uint64_t*>(credit_mr_->addr) = peer.recv_slots;
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = static_cast<ibv_mtu>(
      std::min(static_cast<uint32_t>(device_->active_mtu()), peer.mtu));  // both ends' smaller
  a.dest_qp_num = peer.qpn;
  a.rq_psn = peer.psn;
  a.max_dest_rd_atomic = 1;
  a.min_rnr_timer = 12;
  a.ah_attr.is_global = 1;
  std::memcpy(a.ah_attr.grh.dgid.raw, peer.gid.data(), 16);
  a.ah_attr.grh.sgid_index = static_cast<uint8_t>(gid_index);
  a.ah_attr.grh.hop_limit = 64;
  a.ah_attr.port_num = device_->port();
  SHOAL_TRY(modify(qp_.get(), a,
                   IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                       IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
                   "RTR"),
            "");
  ibv_qp_attr r{};
  r.qp_state = IBV_QPS_RTS;
  r.timeout = kAckTimeout;
  r.retry_cnt = kRetryCount;
  r.rnr_retry = 0;  // credits make RNR impossible: one is a bug, reported at once
  r.sq_psn = psn_;
  r.max_rd_atomic = 1;
  return modify(qp_.get(), r,
                IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                    IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
                "RTS");
}

void RdmaLink::start_threads() {
  last_sent_ns_ = 0;
  writer_ = std::thread([this] { write_loop(); });
  watcher_ = std::thread([this] { watch_control(); });
}

}  // namespace shoal::net

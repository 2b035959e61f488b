#include "pod/pod_mesh.hpp"

#include <algorithm>
#include <cstring>

#include "devices/io_bus.hpp"
#include "net/coherence_wire.hpp"

namespace shoal {

using net::Frame;
using net::MessageType;

PodMesh::PodMesh(NodeId self, std::vector<std::string> host_names, Handlers handlers,
                 std::chrono::milliseconds failure_timeout)
    : self_(self),
      names_(std::move(host_names)),
      handlers_(std::move(handlers)),
      failure_timeout_(failure_timeout) {
  links_.resize(names_.size());
  ended_.resize(names_.size());
  done_.resize(names_.size());
}

PodMesh::~PodMesh() {
  close();
}

bool PodMesh::attach(NodeId from, std::shared_ptr<net::Link> link) {
  std::lock_guard lock(mu_);
  if (closed_ || from == self_ || from >= links_.size() || links_[from]) return false;
  net::Link* raw = link.get();
  // Both ends watch: a member that goes silent (partitioned, frozen) is lost after the timeout
  // even while nothing else is being sent, e.g. while vCPUs wait for its pages.
  raw->watch_liveness(failure_timeout_);
  links_[from] = std::move(link);
  ++attached_;
  readers_.emplace_back([this, from, raw] { read_loop(from, raw); });
  cv_.notify_all();
  return true;
}

bool PodMesh::wait_complete(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return closed_ || attached_ + 1 == links_.size(); }) &&
         !closed_;
}

Status PodMesh::send_to(NodeId to, const Frame& frame) {
  net::Link* link = nullptr;
  {
    std::lock_guard lock(mu_);
    if (to < links_.size()) link = links_[to].get();
  }
  if (link == nullptr) return Error("no link to host " + std::to_string(to));
  return link->send(frame);  // links are never destroyed before close() joins the readers
}

Status PodMesh::send(const CoherenceMessage& m) {
  if (Status s = send_to(m.to, net::encode_coherence(m)); !s.ok())
    return s.error().context("lost host " + name_of(m.to));
  return {};
}

void PodMesh::broadcast(const Frame& frame) {
  for (size_t n = 0; n < links_.size(); ++n)
    if (n != self_) (void)send_to(static_cast<NodeId>(n), frame);
}

Result<std::array<uint8_t, 8>> PodMesh::forward(const ForwardedExit& e) {
  Pending p;
  uint32_t id = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) return Error("the pod is stopping");
    id = next_request_++;
    pending_[id] = &p;
  }
  Status s = send_to(0, encode_forwarded_exit(e, id));
  std::unique_lock lock(mu_);
  if (!s.ok()) p.failed = true;
  cv_.wait(lock, [&] { return p.done || p.failed || closed_; });
  pending_.erase(id);
  if (!p.done) return Error("forward the access to " + name_of(0) + ": the link is down");
  return p.data;
}

void PodMesh::reply_forwarded(NodeId to, uint32_t request, const std::array<uint8_t, 8>& data) {
  (void)send_to(to, Frame{MessageType::kForwardedExitDone, request,
                          std::vector<uint8_t>(data.begin(), data.end())});
}

void PodMesh::close() {
  std::vector<std::thread> readers;
  std::vector<std::shared_ptr<net::Link>> links;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    links = links_;
    readers.swap(readers_);
  }
  cv_.notify_all();
  // Teardown order: what was sent is delivered (every member reads a leave notice before the
  // end of its link, so an orderly stop never looks like a lost host), the sockets shut
  // down, which wakes the readers, then they are joined.
  const auto deadline = std::chrono::steady_clock::now() + kFinishGrace;
  for (auto& l : links)
    if (l)
      l->finish(std::max(std::chrono::milliseconds(0),
                         std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now())));
  for (auto& l : links)
    if (l) l->close();
  for (auto& t : readers)
    if (t.joinable()) t.join();
}

void PodMesh::send_done() {
  {
    std::lock_guard lock(mu_);
    done_sent_ = true;
  }
  broadcast(Frame{MessageType::kPodDone, 0, {}});
}

bool PodMesh::wait_others_done(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    for (size_t n = 0; n < links_.size(); ++n)
      if (n != self_ && links_[n] && !done_[n] && !ended_[n]) return false;
    return true;
  });
}

bool PodMesh::done_both_ways(NodeId from) {
  std::lock_guard lock(mu_);
  return done_[from] && done_sent_;
}

void PodMesh::read_loop(NodeId from, net::Link* link) {
  read_frames(from, link);
  std::lock_guard lock(mu_);
  ended_[from] = true;
  cv_.notify_all();
}

void PodMesh::read_frames(NodeId from, net::Link* link) {
  auto closing = [&] {
    std::lock_guard lock(mu_);
    return closed_;
  };
  for (;;) {
    auto f = link->receive();
    if (!f) {
      // A member closes its links once every other one is done, this one included: after
      // both dones, the end is no lost host; before this one's, the peer crashed or gave up.
      if (!closing() && !done_both_ways(from)) handlers_.lost(from, f.error());
      return;
    }
    switch (f->type) {
      case MessageType::kCoherence: {
        auto m = net::decode_coherence(*f);
        if (!m || m->from != from || m->to != self_) {
          handlers_.lost(from, m ? Error("a coherence message with the wrong hosts") : m.error());
          link->close();
          return;
        }
        handlers_.coherence(std::move(*m));
        break;
      }
      case MessageType::kForwardedExit: {
        auto e = decode_forwarded_exit(*f);
        if (!e || self_ != 0) {
          handlers_.lost(from,
                         e ? Error("a forwarded exit sent to a host without devices") : e.error());
          link->close();
          return;
        }
        handlers_.forwarded_exit(from, *e, f->request);
        break;
      }
      case MessageType::kForwardedExitDone: {
        std::lock_guard lock(mu_);
        auto it = pending_.find(f->request);
        if (it != pending_.end() && f->payload.size() == 8) {
          std::memcpy(it->second->data.data(), f->payload.data(), 8);
          it->second->done = true;
          cv_.notify_all();
        }
        break;
      }
      case MessageType::kVcpuMigrate:
      case MessageType::kVcpuArrive:
      case MessageType::kVcpuPlaced:
      case MessageType::kPlacementProposal: {
        auto m = decode_vcpu_move(*f);
        if (!m || !handlers_.vcpu) {
          handlers_.lost(from, m ? Error("a vCPU move sent to a mesh that takes none") : m.error());
          link->close();
          return;
        }
        handlers_.vcpu(from, f->type, std::move(*m));
        break;
      }
      case MessageType::kSnapshotStep:
      case MessageType::kSnapshotStepDone: {
        auto step = decode_snapshot_step(*f);
        if (!step || !handlers_.snapshot) {
          handlers_.lost(
              from, step ? Error("a snapshot step sent to a mesh that takes none") : step.error());
          link->close();
          return;
        }
        handlers_.snapshot(from, f->type, std::move(*step));
        break;
      }
      case MessageType::kInterrupt: {
        auto m = decode_interrupt(*f);
        if (!m || !handlers_.interrupt) {
          handlers_.lost(from,
                         m ? Error("an interrupt sent to a mesh that takes none") : m.error());
          link->close();
          return;
        }
        handlers_.interrupt(from, *m);
        break;
      }
      case MessageType::kPodLeave: {
        // The member is stopping, but it goes on answering for the pages it holds until every
        // member is done (kPodDone): reading on is what lets a request of this host's still
        // under way complete.
        auto o = decode_pod_outcome(*f);
        handlers_.leave(from, o ? *o : PodOutcome{1, true, "left with a garbled notice"});
        break;
      }
      case MessageType::kPodDone: {
        // It asks for nothing more, but still answers for its pages until everyone is done.
        std::lock_guard lock(mu_);
        done_[from] = true;
        cv_.notify_all();
        break;
      }
      default:
        handlers_.lost(
            from, Error("unexpected message type " + std::to_string(static_cast<int>(f->type))));
        link->close();
        return;
    }
  }
}

void ForwardingDevice::read(uint64_t offset, std::span<uint8_t> data) {
  ForwardedExit e;
  e.space = space_;
  e.size = static_cast<uint8_t>(std::min<size_t>(data.size(), 8));
  e.address = base_ + offset;
  auto r = mesh_.forward(e);
  if (r)
    std::memcpy(data.data(), r->data(), e.size);
  else
    std::fill(data.begin(), data.end(), 0xff);  // the pod is going down: an open bus
}

void ForwardingDevice::write(uint64_t offset, std::span<const uint8_t> data) {
  ForwardedExit e;
  e.space = space_;
  e.write = true;
  e.size = static_cast<uint8_t>(std::min<size_t>(data.size(), 8));
  e.address = base_ + offset;
  std::memcpy(e.data.data(), data.data(), e.size);
  (void)mesh_.forward(e);  // waits, so the device sees the vCPU's accesses in order
}

}  // namespace shoal

// An RDMA verbs device (libibverbs): the opened device context, its protection domain, and the
// port and GID a link uses. One device per node, shared by every RdmaLink of the node.
//
// Also the RAII owners of the other verbs objects a link makes: each owns one, frees it once,
// and moves. Destroy in the reverse order of creation (QP, CQs, channel, MRs, PD, context):
// libibverbs refuses (EBUSY) to free an object something else still uses, and leaks it.
#pragma once

#include <infiniband/verbs.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "shoal/status.hpp"

namespace shoal::net {

struct VerbsFree {
  void operator()(ibv_context* c) const { ibv_close_device(c); }
  void operator()(ibv_pd* p) const { ibv_dealloc_pd(p); }
  void operator()(ibv_mr* m) const { ibv_dereg_mr(m); }
  void operator()(ibv_comp_channel* c) const { ibv_destroy_comp_channel(c); }
  void operator()(ibv_cq* c) const { ibv_destroy_cq(c); }
  void operator()(ibv_qp* q) const { ibv_destroy_qp(q); }
};
template <class T>
using VerbsPtr = std::unique_ptr<T, VerbsFree>;

class RdmaDevice {
 public:
  // `name` empty: the first device with an active port. "no RDMA device: ..." when there is
  // none (or not that one), naming what there is.
  static Result<std::shared_ptr<RdmaDevice>> open(const std::string& name);

  ibv_context* context() const { return context_.get(); }
  ibv_pd* pd() const { return pd_.get(); }
  uint8_t port() const { return port_; }
  ibv_mtu active_mtu() const { return mtu_; }
  const std::string& name() const { return name_; }
  // The index of the port's RoCE v2 GID for an IPv4 address of this node (a.b.c.d, as the
  // spec and the TCP link have it): the one that address's packets leave from.
  Result<int> gid_index_for(const std::string& ipv4) const;
  Result<std::array<uint8_t, 16>> gid(int index) const;
  // What an RdmaLink of `slots` slots needs of the device; the error names the capability
  // ("RDMA device X lacks a needed capability: queue pair depth (max_qp_wr) 16, shoal needs 36").
  Status check_capabilities(uint32_t slots) const;

 private:
  RdmaDevice() = default;
  VerbsPtr<ibv_context> context_;
  VerbsPtr<ibv_pd> pd_;
  uint8_t port_ = 1;
  ibv_mtu mtu_ = IBV_MTU_1024;
  int gid_table_len_ = 0;
  std::string name_;
};

}  // namespace shoal::net

#include "net/rdma_device.hpp"

#include <arpa/inet.h>

#include <cstring>
#include <vector>

namespace shoal::net {

namespace {

struct DeviceListFree {
  void operator()(ibv_device** l) const { ibv_free_device_list(l); }
};

// The first active port of an open device (0: none).
uint8_t active_port(ibv_context* c, ibv_port_attr& attr) {
  ibv_device_attr dev{};
  if (ibv_query_device(c, &dev) != 0) return 0;
  for (uint8_t p = 1; p <= dev.phys_port_cnt; ++p)
    if (ibv_query_port(c, p, &attr) == 0 && attr.state == IBV_PORT_ACTIVE) return p;
  return 0;
}

}  // namespace

Result<std::shared_ptr<RdmaDevice>> RdmaDevice::open(const std::string& name) {
  int n = 0;
  std::unique_ptr<ibv_device*, DeviceListFree> list(ibv_get_device_list(&n));
  if (!list)
    return Error("no RDMA device: " + errno_error("ibv_get_device_list").message() +
                 " (is the verbs kernel module, ib_uverbs, loaded?)");
  if (n == 0)
    return Error(
        "no RDMA device: libibverbs finds none on this host (no /dev/infiniband/"
        "uverbs*, or no provider library for it)");
  std::string seen;
  for (int i = 0; i < n; ++i) {
    const std::string dev_name = ibv_get_device_name(list.get()[i]);
    seen += (seen.empty() ? "" : ", ") + dev_name;
    if (!name.empty() && dev_name != name) continue;
    VerbsPtr<ibv_context> ctx(ibv_open_device(list.get()[i]));
    if (!ctx) {
      if (!name.empty()) return errno_error("open RDMA device " + name);
      continue;
    }
    ibv_port_attr attr{};
    const uint8_t port = active_port(ctx.get(), attr);
    if (port == 0) {
      if (!name.empty()) return Error("RDMA device " + name + " has no active port");
      continue;
    }
    if (attr.link_layer != IBV_LINK_LAYER_ETHERNET) {
      if (name.empty()) continue;  // the first RoCE device, then
      return Error("RDMA device " + dev_name +
                   " is not RoCE (InfiniBand link layer): shoal addresses peers by IP");
    }
    std::shared_ptr<RdmaDevice> d(new RdmaDevice());
    d->pd_.reset(ibv_alloc_pd(ctx.get()));
    if (!d->pd_) return errno_error("RDMA device " + dev_name + ": ibv_alloc_pd");
    d->context_ = std::move(ctx);
    d->port_ = port;
    d->mtu_ = attr.active_mtu;
    d->gid_table_len_ = attr.gid_tbl_len;
    d->name_ = dev_name;
    return d;
  }
  if (!name.empty())
    return Error("no RDMA device: no device named " + name + " (there is " + seen + ")");
  return Error("no RDMA device: none with an active RoCE port (there is " + seen + ")");
}

Result<int> RdmaDevice::gid_index_for(const std::string& ipv4) const {
  in_addr a{};
  if (inet_pton(AF_INET, ipv4.c_str(), &a) != 1)
    return Error("RDMA needs an IPv4 address, got '" + ipv4 + "'");
  // RoCE v2 over IPv4: ::ffff:a.b.c.d.
  std::array<uint8_t, 16> want{};
  want[10] = want[11] = 0xff;
  std::memcpy(&want[12], &a, 4);
  for (int i = 0; i < gid_table_len_; ++i) {
    ibv_gid_entry e{};
    if (ibv_query_gid_ex(context(), port_, static_cast<uint32_t>(i), &e, 0) != 0) continue;
    if (e.gid_type == IBV_GID_TYPE_ROCE_V2 && std::memcmp(e.gid.raw, want.data(), 16) == 0)
      return i;
  }
  return Error("RDMA device " + name_ + " has no RoCE v2 GID for " + ipv4 +
               " (is that address on the device's network interface?)");
}

Result<std::array<uint8_t, 16>> RdmaDevice::gid(int index) const {
  ibv_gid g{};
  if (ibv_query_gid(context(), port_, index, &g) != 0)
    return errno_error("RDMA device " + name_ + ": query GID " + std::to_string(index));
  std::array<uint8_t, 16> out{};
  std::memcpy(out.data(), g.raw, 16);
  return out;
}

Status RdmaDevice::check_capabilities(uint32_t slots) const {
  ibv_device_attr attr{};
  if (int rc = ibv_query_device(context(), &attr); rc != 0)
    return errno_error("query RDMA device " + name_, rc);
  auto short_of = [&](const char* what, int has, uint32_t needs) -> Status {
    if (has >= 0 && static_cast<uint32_t>(has) >= needs) return {};
    return Error("RDMA device " + name_ + " lacks a needed capability: " + what + " " +
                 std::to_string(has) + ", shoal needs " + std::to_string(needs));
  };
  SHOAL_TRY(short_of("queue pair depth (max_qp_wr)", attr.max_qp_wr, slots + 4), "");
  SHOAL_TRY(short_of("completion queue size (max_cqe)", attr.max_cqe, slots + 8), "");
  SHOAL_TRY(short_of("scatter/gather entries (max_sge)", attr.max_sge, 1), "");
  SHOAL_TRY(short_of("memory regions (max_mr)", attr.max_mr, 2), "");
  return {};
}

}  // namespace shoal::net

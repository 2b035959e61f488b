#include "rdma/rdma_test_support.hpp"

#include <cstdio>
#include <future>
#include <thread>

namespace shoal::test {

net::LinkIdentity identity(const std::string& name, const std::string& secret) {
  return net::LinkIdentity{name, std::vector<uint8_t>(secret.begin(), secret.end()),
                           std::chrono::milliseconds(5000)};
}

Result<std::shared_ptr<net::RdmaDevice>> rdma_device() {
  static auto device = net::RdmaDevice::open("");
  if (!device)
    return Error(device.error().message() + " (the RDMA tests run inside scripts/test-vm --rdma)");
  return *device;
}

Result<LinkPair> make_link_pair(const PairOptions& o) {
  auto device = rdma_device();
  if (!device) return device.error();
  net::RdmaLinkConfig a = o.a;
  if (a.local_address.empty() && o.address == kRdmaAddress) a.local_address = "127.1.0.2";
  auto listener = net::TcpListener::listen(o.address, 0);
  if (!listener) return listener.error();
  auto accepted = std::async(std::launch::async, [&]() -> Result<std::unique_ptr<net::RdmaLink>> {
    auto socket = (*listener)->accept();
    if (!socket) return socket.error();
    auto tcp = net::TcpLink::accept(std::move(*socket), identity("b", o.secret_b));
    if (!tcp) return tcp.error();
    return net::RdmaLink::upgrade(std::shared_ptr<net::TcpLink>(std::move(*tcp)), *device, false,
                                  o.b);
  });
  auto tcp = net::TcpLink::connect(o.address, (*listener)->port(), identity("a"));
  Result<std::unique_ptr<net::RdmaLink>> connected = Error("not connected");
  if (tcp)
    connected =
        net::RdmaLink::upgrade(std::shared_ptr<net::TcpLink>(std::move(*tcp)), *device, true, a);
  else
    connected = tcp.error();
  if (!connected) {
    (*listener)->close();
    (void)accepted.get();
    return connected.error();
  }
  auto other = accepted.get();
  if (!other) return other.error();
  if (o.liveness.count() > 0) {
    (*connected)->watch_liveness(o.liveness);
    (*other)->watch_liveness(o.liveness);
  }
  return LinkPair{std::move(*connected), std::move(*other)};
}

int run_sending_peer(uint16_t port) {
  auto device = rdma_device();
  if (!device) return 2;
  auto tcp = net::TcpLink::connect(kRdmaAddress, port, identity("a"));
  if (!tcp) return std::fprintf(stderr, "peer: %s\n", tcp.error().message().c_str()), 3;
  auto link =
      net::RdmaLink::upgrade(std::shared_ptr<net::TcpLink>(std::move(*tcp)), *device, true, {});
  if (!link) return std::fprintf(stderr, "peer: %s\n", link.error().message().c_str()), 4;
  const net::Frame f{net::MessageType::kPing, 0, std::vector<uint8_t>(256 * 1024, 0x5a)};
  // Paced, so the queue never reaches its limit before the test kills this process.
  for (;;) {
    if (!(*link)->send(f).ok()) return 5;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace shoal::test

// Two RdmaLinks joined as two nodes join them (an authenticated TcpLink, then the upgrade), in
// one process, on the test machine's soft-RoCE device (tests only).
#pragma once

#include <memory>
#include <string>

#include "net/rdma_link.hpp"

namespace shoal::test {

// On the soft-RoCE device's interface inside scripts/test-vm --rdma.
inline constexpr const char* kRdmaAddress = "127.1.0.1";

net::LinkIdentity identity(const std::string& name, const std::string& secret = "rdma test secret");
// The device, opened once; the error (when there is none) says why, for GTEST_SKIP.
Result<std::shared_ptr<net::RdmaDevice>> rdma_device();

struct LinkPair {
  std::unique_ptr<net::RdmaLink> a;  // connected
  std::unique_ptr<net::RdmaLink> b;  // accepted
};
struct PairOptions {
  net::RdmaLinkConfig a;  // local_address empty: 127.1.0.2, another GID than b's
  net::RdmaLinkConfig b;
  std::string secret_b = "rdma test secret";
  std::string address = kRdmaAddress;  // b listens there (and a's GID, if a's is empty)
  // Heartbeats both ways: a link that stops working fails the test within this, instead of
  // hanging it until the test machine's timeout. 0: none (exact byte counts).
  std::chrono::milliseconds liveness{5000};
};
Result<LinkPair> make_link_pair(const PairOptions& options = {});

// The death test's peer process: connects to kRdmaAddress:port and sends frames until killed.
int run_sending_peer(uint16_t port);

}  // namespace shoal::test

// The RDMA endpoint exchange's message (net/rdma_wire.hpp): no device needed.
#include "net/rdma_wire.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace shoal::net {
namespace {

RdmaEndpoint sample() {
  RdmaEndpoint e;
  e.qpn = 0x11;
  e.psn = 0xabcdef;
  e.gid[10] = e.gid[11] = 0xff;
  e.gid[12] = 127, e.gid[15] = 1;
  e.credit_addr = 0x7f0000001000;
  e.credit_rkey = 0x1234;
  e.recv_slots = 32;
  e.slot_bytes = 32768;
  e.sealed = true;
  e.key.fill(0x42);
  e.mtu = 5;
  return e;
}

std::string error_of(const Frame& f) {
  auto r = decode_rdma_endpoint(f);
  return r.ok() ? "" : r.error().message();
}

TEST(RdmaWire, AnEndpointRoundTrips) {
  const Frame f = encode_rdma_endpoint(sample());
  ASSERT_EQ(f.payload.size(), kRdmaEndpointBytes);
  auto e = decode_rdma_endpoint(f);
  ASSERT_TRUE(e.ok()) << e.error().message();
  EXPECT_EQ(e->qpn, 0x11u);
  EXPECT_EQ(e->psn, 0xabcdefu);
  EXPECT_EQ(e->gid, sample().gid);
  EXPECT_EQ(e->credit_addr, 0x7f0000001000u);
  EXPECT_EQ(e->credit_rkey, 0x1234u);
  EXPECT_EQ(e->recv_slots, 32u);
  EXPECT_EQ(e->slot_bytes, 32768u);
  EXPECT_TRUE(e->sealed);
  EXPECT_EQ(e->key, sample().key);
  EXPECT_EQ(e->mtu, 5u);
  RdmaEndpoint plain = sample();
  plain.sealed = false;
  EXPECT_FALSE(decode_rdma_endpoint(encode_rdma_endpoint(plain))->sealed);
}

TEST(RdmaWire, EveryFieldOutOfRangeIsRefusedByName) {
  auto with = [](auto edit) {
    RdmaEndpoint e = sample();
    edit(e);
    return encode_rdma_endpoint(e);
  };
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.qpn = 0; })).find("qpn 0"), std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.qpn = 1u << 24; })).find("qpn"),
            std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.psn = 1u << 24; })).find("psn"),
            std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.credit_addr = 0; })).find("credit_addr"),
            std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.credit_addr = 0x1001; })).find("credit_addr"),
            std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.recv_slots = 1; })).find("recv_slots 1"),
            std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.recv_slots = 1025; })).find("recv_slots"),
            std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.slot_bytes = 100; })).find("slot_bytes 100"),
            std::string::npos);
  EXPECT_NE(
      error_of(with([](RdmaEndpoint& e) { e.slot_bytes = (1u << 20) + 1; })).find("slot_bytes"),
      std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.mtu = 0; })).find("mtu 0"), std::string::npos);
  EXPECT_NE(error_of(with([](RdmaEndpoint& e) { e.mtu = 6; })).find("mtu 6"), std::string::npos);
  Frame f = encode_rdma_endpoint(sample());
  f.payload[0] = 9;  // version
  EXPECT_NE(error_of(f).find("version 9"), std::string::npos);
  f = encode_rdma_endpoint(sample());
  f.payload[2] = 2;  // an undefined flag instead of "sealed"
  EXPECT_NE(error_of(f).find("flags 2"), std::string::npos) << error_of(f);
}

TEST(RdmaWire, EveryOtherSizeAndTypeIsRefused) {
  const Frame good = encode_rdma_endpoint(sample());
  for (size_t n = 0; n < kRdmaEndpointBytes + 8; ++n) {
    if (n == kRdmaEndpointBytes) continue;
    Frame f = good;
    f.payload.resize(n);
    EXPECT_NE(error_of(f).find("bytes; expected 84"), std::string::npos) << n;
  }
  Frame other = good;
  other.type = MessageType::kPing;
  EXPECT_EQ(error_of(other), "not an RDMA connect message");
}

}  // namespace
}  // namespace shoal::net

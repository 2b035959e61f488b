// What two nodes exchange, over their authenticated TCP link, to join an RDMA queue pair: the
// payload of a kRdmaConnect frame (both directions), followed by a kRdmaReady from the side
// that connected once its queue pair can receive and send (docs/rdma.md).
//
//   offset 0  u16 version     kRdmaWireVersion
//          2  u16 flags       bit 0: the sender seals its frames (AES-256-GCM, as over TCP);
//                             both ends must agree
//          4  u32 qpn         the sender's queue pair number (24 bits)
//          8  u32 psn         its first packet sequence number (24 bits)
//         12  u8  gid[16]     its port GID (RoCE v2: the IPv4-mapped address of its TCP end)
//         28  u64 credit_addr where the peer writes how many receive slots the sender has posted
//         36  u32 credit_rkey the remote key of that word
//         40  u32 recv_slots  receive slots the sender posts for the peer (the peer's credits)
//         44  u32 slot_bytes  bytes each of those slots takes (the largest SEND the peer may post)
//         48  u8  key[32]     a fresh random key for the frames the sender seals over RDMA
//                             (this message itself travels sealed over the TCP link)
//         80  u32 mtu         the sender port's active MTU (ibv_mtu: 1 = 256 .. 5 = 4096);
//                             both ends use the smaller
//
// 84 bytes exactly; decode_rdma_endpoint() checks every field's range.
#pragma once

#include <array>
#include <cstdint>

#include "net/frame.hpp"

namespace shoal::net {

inline constexpr uint16_t kRdmaWireVersion = 2;  // 2: the MTU; the end of stream in-band
inline constexpr size_t kRdmaEndpointBytes = 84;
inline constexpr uint16_t kRdmaSealedFlag = 1;
inline constexpr uint32_t kMinRdmaSlots = 2;
inline constexpr uint32_t kMaxRdmaSlots = 1024;
inline constexpr uint32_t kMinRdmaSlotBytes = 4096;
inline constexpr uint32_t kMaxRdmaSlotBytes = 1u << 20;

struct RdmaEndpoint {
  uint32_t qpn = 0;
  uint32_t psn = 0;
  std::array<uint8_t, 16> gid{};
  uint64_t credit_addr = 0;
  uint32_t credit_rkey = 0;
  uint32_t recv_slots = 0;
  uint32_t slot_bytes = 0;
  bool sealed = true;
  std::array<uint8_t, 32> key{};
  uint32_t mtu = 3;  // IBV_MTU_1024
};

Frame encode_rdma_endpoint(const RdmaEndpoint& e);
Result<RdmaEndpoint> decode_rdma_endpoint(const Frame& frame);

}  // namespace shoal::net

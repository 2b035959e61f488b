#include "net/rdma_wire.hpp"

#include <string>

#include "shoal/wire_bytes.hpp"

namespace shoal::net {

Frame encode_rdma_endpoint(const RdmaEndpoint& e) {
  WireWriter w;
  w.put(kRdmaWireVersion).put(e.sealed ? kRdmaSealedFlag : uint16_t{0}).put(e.qpn).put(e.psn);
  w.put_bytes(e.gid.data(), e.gid.size());
  w.put(e.credit_addr).put(e.credit_rkey).put(e.recv_slots).put(e.slot_bytes);
  w.put_bytes(e.key.data(), e.key.size());
  w.put(e.mtu);
  return Frame{MessageType::kRdmaConnect, 0, w.take()};
}

Result<RdmaEndpoint> decode_rdma_endpoint(const Frame& f) {
  if (f.type != MessageType::kRdmaConnect) return Error("not an RDMA connect message");
  if (f.payload.size() != kRdmaEndpointBytes)
    return Error("RDMA connect message of " + std::to_string(f.payload.size()) +
                 " bytes; expected " + std::to_string(kRdmaEndpointBytes));
  WireReader r(f.payload);
  uint16_t version = 0, flags = 0;
  RdmaEndpoint e;
  // The size was checked: every get succeeds.
  r.get(version), r.get(flags), r.get(e.qpn), r.get(e.psn);
  r.get_bytes(e.gid.data(), e.gid.size());
  r.get(e.credit_addr), r.get(e.credit_rkey), r.get(e.recv_slots), r.get(e.slot_bytes);
  r.get_bytes(e.key.data(), e.key.size());
  r.get(e.mtu);
  auto bad = [](const char* field, uint64_t v, const std::string& want) {
    return Error("RDMA connect message: " + std::string(field) + " " + std::to_string(v) +
                 " is out of range (" + want + ")");
  };
  if (version != kRdmaWireVersion)
    return bad("version", version, "this node speaks " + std::to_string(kRdmaWireVersion));
  if ((flags & ~kRdmaSealedFlag) != 0) return bad("flags", flags, "only bit 0 is defined");
  e.sealed = (flags & kRdmaSealedFlag) != 0;
  if (e.qpn == 0 || e.qpn > 0xffffff) return bad("qpn", e.qpn, "1 to 2^24-1");
  if (e.psn > 0xffffff) return bad("psn", e.psn, "below 2^24");
  if (e.credit_addr == 0 || e.credit_addr % 8 != 0)
    return bad("credit_addr", e.credit_addr, "a non-zero multiple of 8");
  if (e.recv_slots < kMinRdmaSlots || e.recv_slots > kMaxRdmaSlots)
    return bad("recv_slots", e.recv_slots,
               std::to_string(kMinRdmaSlots) + " to " + std::to_string(kMaxRdmaSlots));
  if (e.slot_bytes < kMinRdmaSlotBytes || e.slot_bytes > kMaxRdmaSlotBytes)
    return bad("slot_bytes", e.slot_bytes,
               std::to_string(kMinRdmaSlotBytes) + " to " + std::to_string(kMaxRdmaSlotBytes));
  if (e.mtu < 1 || e.mtu > 5) return bad("mtu", e.mtu, "1 (256 bytes) to 5 (4096 bytes)");
  return e;
}

}  // namespace shoal::net

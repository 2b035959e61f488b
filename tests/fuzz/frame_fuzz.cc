// libFuzzer target: the frame decoder, coherence message decoding, every pod control and
// member-to-member payload decoder (pod/pod_messages.hpp, the vCPU moves and pod snapshot
// steps included), the RDMA endpoint exchange, the sealed-frame opener, and a server-side handshake
// on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "kvm/vcpu_state.hpp"
#include "net/coherence_wire.hpp"
#include "net/frame_cipher.hpp"
#include "net/handshake.hpp"
#include "net/rdma_wire.hpp"
#include "pod/pod_messages.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shoal::net::FrameDecoder decoder;
  shoal::net::Handshake server(shoal::net::Handshake::Role::kServer, "fuzz",
                               std::vector<uint8_t>(32, 7));
  server.start();
  // Feed in two pieces to exercise partial headers.
  const size_t half = size / 2;
  for (auto piece :
       {std::span<const uint8_t>(data, half), std::span<const uint8_t>(data + half, size - half)}) {
    if (!decoder.feed(piece).ok()) break;
    while (auto f = decoder.next()) {
      // A sealed frame's opener on whatever arrives (it must refuse, never crash).
      shoal::net::FrameOpener opener(shoal::net::Key{});
      (void)opener.open(*f);
      (void)shoal::net::decode_coherence(*f);
      (void)shoal::decode_pod_start(*f);
      (void)shoal::decode_pod_reply(*f);
      (void)shoal::decode_pod_outcome(*f);
      (void)shoal::decode_boot_plan(*f);
      (void)shoal::decode_mesh_join(*f);
      if (auto r = shoal::decode_pod_snapshot_request(*f);
          r.ok() && (r->dir.empty() || r->dir.size() > shoal::kMaxSnapshotDirBytes))
        __builtin_trap();
      if (auto s = shoal::decode_snapshot_step(*f);
          s.ok() && (s->slot_gpas.size() > shoal::kMaxSnapshotStepSlots ||
                     s->text.size() > shoal::kMaxSnapshotStepText))
        __builtin_trap();
      if (auto m = shoal::decode_vcpu_move(*f);
          m.ok() && (m->vcpu >= shoal::kMaxPodVcpus || m->state.size() > shoal::kMaxVcpuStateBytes))
        __builtin_trap();
      if (auto e = shoal::decode_forwarded_exit(*f); e.ok() && e->size > 8) __builtin_trap();
      if (auto r = shoal::net::decode_rdma_endpoint(*f);
          r.ok() &&
          (r->qpn == 0 || r->qpn > 0xffffff || r->recv_slots > shoal::net::kMaxRdmaSlots ||
           r->slot_bytes > shoal::net::kMaxRdmaSlotBytes || r->credit_addr % 8 != 0 || r->mtu < 1 ||
           r->mtu > 5))
        __builtin_trap();
      if (auto i = shoal::decode_interrupt(*f);
          i.ok() && (i->vcpu >= shoal::kMaxPodVcpus ||
                     (i->mode == shoal::ApicDelivery::kFixed && i->vector < 16) ||
                     (i->mode == shoal::ApicDelivery::kNmi && i->vector != 2) ||
                     (i->mode == shoal::ApicDelivery::kInit && i->vector != 0)))
        __builtin_trap();
      auto replies = server.on_frame(*f);
      // Nothing but the handshake's own frames ever leaves an unauthenticated server.
      for (const auto& r : replies)
        if (r.type != shoal::net::MessageType::kHelloAck &&
            r.type != shoal::net::MessageType::kAuthOk)
          __builtin_trap();
    }
  }
  return 0;
}

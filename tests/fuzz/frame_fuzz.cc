// libFuzzer target: the frame decoder, coherence message decoding and a server-side
// handshake on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "net/coherence_wire.hpp"
#include "net/handshake.hpp"

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
      (void)shoal::net::decode_coherence(*f);
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

// libFuzzer target: a snapshot file as `shoal run --restore` opens it (header, index and state
// checks), then every block read as a restore would, and the machine state decoded. Anything
// the checks let through must be safe to read: no crash, no read outside a buffer.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "machine/machine_state.hpp"
#include "memory/snapshot_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("snapshot", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (size > 0 && write(fd, data, size) != static_cast<ssize_t>(size)) {
    close(fd);
    return 0;
  }
  auto file = shoal::SnapshotFile::open("/proc/self/fd/" + std::to_string(fd));
  close(fd);
  if (!file) return 0;
  const shoal::SnapshotFile& f = **file;
  std::vector<uint8_t> block(f.header().block_bytes), scratch;
  for (uint64_t b = 0; b < f.blocks() && b < 64; ++b) {
    if (!f.read_block(b, block, scratch).ok()) continue;
    f.for_each_run(b, [&](uint64_t page, uint64_t at, uint64_t count) {
      if (page + count > f.header().ram_bytes / 4096 || at + count > f.block_pages(b))
        __builtin_trap();
      if (f.slot_of(page) != b * f.header().pages_per_block() + at) __builtin_trap();
    });
  }
  // The same bytes back, or (a state holding vCPUs of an older encoding, as the seed does) a
  // re-encoding in the current one that is stable.
  if (auto m = shoal::decode_machine_state(f.state()); m.ok()) {
    const std::vector<uint8_t> again = shoal::encode_machine_state(*m);
    if (again != f.state()) {
      auto n = shoal::decode_machine_state(again);
      if (!n.ok() || shoal::encode_machine_state(*n) != again) __builtin_trap();
    }
  }
  return 0;
}

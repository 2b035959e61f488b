// What `shoal run` asks of one machine: the guest, its size, its console and its memory.
#pragma once

#include <cstdint>
#include <string>

#include <vector>

#include "devices/virtio_blk.hpp"
#include "devices/virtio_console.hpp"
#include "devices/virtio_net.hpp"
#include "memory/memory_manager.hpp"

namespace shoal {

struct RunConfig {
  std::string kernel;
  std::string initrd;  // empty: none
  std::string cmdline;
  uint64_t memory = 512ull << 20;
  int vcpus = 1;
  std::string serial = "stdio";  // or a file path
  std::string log_level = "info";
  MemoryOptions memory_options;
  bool print_stats = false;  // --stats: memory counters on stderr at exit
  // --on-reboot: a guest reset ends shoal (as Firecracker does) or boots the guest again.
  enum class OnReboot { kExit, kRestart } on_reboot = OnReboot::kExit;
  std::string api_socket;
  // --replica DIR --replica-interval MS: a storage replica of the guest, one checkpoint per
  // interval (machine/replica_runner.hpp); empty: none.
  std::string replica_dir;
  uint32_t replica_interval_ms =
      1000;  // --api-socket: the control API (machine/api_server.hpp); empty: none
  // --disk PATH[,ro]: one virtio-blk device each, in order from the first virtio-mmio slot.
  std::vector<DiskOptions> disks;
  // --net tap=NAME[,mac=MAC]: one virtio-net device each, after the disks.
  std::vector<NetOptions> nets;
  // --channel PATH: a virtio-console port bridged to a Unix socket shoal listens on; empty: none.
  std::string channel;
  uint64_t started_ns = 0;  // monotonic_ns() when main() began: start-up is logged against it
};

}  // namespace shoal

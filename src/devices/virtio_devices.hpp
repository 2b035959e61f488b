// The virtio devices of a guest, in the order both `shoal run` and a pod's host 0 put them on
// the MMIO bus (docs/devices.md): the disks, the nets, then the channel, one slot each.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "devices/virtio_blk.hpp"
#include "devices/virtio_mmio.hpp"
#include "devices/virtio_net.hpp"
#include "shoal/status.hpp"

namespace shoal {

struct VirtioDeviceOptions {
  const std::vector<DiskOptions>& disks;
  const std::vector<NetOptions>& nets;
  const std::string& channel;  // empty: no channel

  size_t count() const { return disks.size() + nets.size() + (channel.empty() ? 0 : 1); }
};

// Opens them all (each checked before the guest starts); `vcpus` sizes the disks' queues.
Result<std::vector<std::unique_ptr<VirtioDevice>>> open_virtio_devices(
    const VirtioDeviceOptions& options, int vcpus);

}  // namespace shoal

#include "devices/virtio_devices.hpp"

#include "devices/virtio_console.hpp"

namespace shoal {

Result<std::vector<std::unique_ptr<VirtioDevice>>> open_virtio_devices(
    const VirtioDeviceOptions& options, int vcpus) {
  auto devices = VirtioBlk::open_all(options.disks, vcpus);
  if (!devices) return devices.error();
  auto nets = VirtioNet::open_all(options.nets);
  if (!nets) return nets.error();
  for (auto& n : *nets) devices->push_back(std::move(n));
  if (!options.channel.empty()) {
    auto channel = VirtioConsole::listen(options.channel);
    if (!channel) return channel.error();
    devices->push_back(std::move(*channel));
  }
  return devices;
}

}  // namespace shoal

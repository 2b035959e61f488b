// Host 0's devices, and every other host's forwarding of port and MMIO accesses to them; host
// 0's thread that serves the forwarded accesses.
#include <unistd.h>

#include <algorithm>

#include "devices/platform_devices.hpp"
#include "devices/simple_devices.hpp"
#include "pod/pod_member.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

namespace shoal {

Status PodMember::build_devices() {
  IoBus& pio = core_->pio();
  IoBus& mmio = core_->mmio();
  if (config_.self == 0) {
    auto uart = insert_platform_devices(pio, core_->vm(),
                                        {[this](uint8_t b) { write_console(b); },
                                         [this](const GuestEnd& end) {
                                           stop({end.code, false, end.why});
                                         }});
    if (!uart) return uart.error();
    SHOAL_TRY(insert_virtio_devices(), "");
    // Guest discards: every page goes back to dormant at its home, on every host. The discard
    // waits for the homes' acks, so the range reads as zero afterwards, as on a single host;
    // one forwarded from another host's vCPU runs on the device thread, never on a link's
    // reader, whose link may carry those acks.
    auto discard = [this](uint64_t gpa, uint64_t bytes) {
      const uint8_t* host = core_->ram().host(gpa, bytes);
      Status s = host == nullptr
                     ? Status(Error("not guest RAM"))
                     : memory_->discard(static_cast<uint64_t>(host - core_->ram().base()), bytes);
      if (!s.ok())
        log::warn("guest discard of {} bytes at 0x{:x}: {}", bytes, gpa, s.error().message());
    };
    return pio.insert(DiscardPort::kPort, 16, std::make_shared<DiscardPort>(discard), "discard");
  }
  // Devices live on host 0: every port, and every MMIO address that is not RAM, goes there.
  auto forward = [&](ForwardedExit::Space space, uint64_t base, uint64_t length) {
    return (space == ForwardedExit::Space::kPort ? pio : mmio)
        .insert(base, length, std::make_shared<ForwardingDevice>(*mesh_, space, base),
                "forward to " + mesh_->name_of(0));
  };
  SHOAL_TRY(forward(ForwardedExit::Space::kPort, 0, 0x10000), "");
  uint64_t at = 0;
  for (const RamRegion& r : core_->ram().regions()) {
    if (r.gpa > at) SHOAL_TRY(forward(ForwardedExit::Space::kMmio, at, r.gpa - at), "");
    at = r.gpa + r.size;
  }
  const uint64_t top = uint64_t{1} << core_->kvm().guest_phys_bits();
  if (at < top) SHOAL_TRY(forward(ForwardedExit::Space::kMmio, at, top - at), "");
  return {};
}

// Host 0's device thread: other hosts' port and MMIO accesses, one at a time in arrival order
// (each vCPU waits for its answer, so its own accesses stay in order).
void PodMember::device_loop() {
  std::unique_lock lock(device_mu_);
  for (;;) {
    device_cv_.wait(lock, [&] { return device_stop_ || !device_queue_.empty(); });
    if (device_queue_.empty()) return;
    const ForwardedWork w = device_queue_.front();
    device_queue_.pop_front();
    lock.unlock();
    serve_forwarded(w.from, w.exit, w.request);
    lock.lock();
  }
}

void PodMember::stop_device_thread() {
  {
    std::lock_guard lock(device_mu_);
    device_stop_ = true;
    device_queue_.clear();  // the pod is stopping: nobody waits for these answers any more
  }
  device_cv_.notify_all();
  if (device_thread_.joinable()) device_thread_.join();
}

void PodMember::serve_forwarded(NodeId from, const ForwardedExit& e, uint32_t request) {
  std::array<uint8_t, 8> data{};
  std::span<uint8_t> bytes(data.data(), e.size);
  const IoBus& bus = e.space == ForwardedExit::Space::kPort ? core_->pio() : core_->mmio();
  if (e.write) {
    std::copy(e.data.begin(), e.data.begin() + e.size, data.begin());
    bus.write(e.address, bytes);
  } else if (!bus.read(e.address, bytes)) {
    data.fill(0xff);
  }
  // Answer after the device acted, so a vCPU's next access cannot overtake this one.
  mesh_->reply_forwarded(from, request, data);
}

// spec.disks, spec.nets and spec.channel, on host 0's MMIO bus as `shoal run` puts them. A
// vCPU on another host reaches a transport's registers by a forwarded MMIO exit (its
// QueueNotify too: the ioeventfd is host 0's), and the rings and buffers through coherent
// memory: the worker's accesses fault like a vCPU's and fetch the pages from wherever they
// are. The devices' interrupts are host 0's IOAPIC's, which the interrupt router forwards.
Status PodMember::insert_virtio_devices() {
  const PodSpec& spec = config_.spec;
  auto devices = open_virtio_devices(spec.virtio(), spec.vcpus);
  if (!devices) return devices.error();
  auto transports = core_->insert_virtio(std::move(*devices));
  if (!transports) return transports.error();
  virtio_ = std::move(*transports);
  return {};
}

void PodMember::stop_virtio_devices() {
  for (auto& t : virtio_) t->stop();
}

}  // namespace shoal

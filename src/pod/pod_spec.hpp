// The pod spec: one guest run by several hosts, written as Kubernetes-style YAML.
//
//   apiVersion: shoal/v1
//   kind: Pod
//   metadata: {name: demo}
//   spec:
//     guest: {kernel: /srv/guest.elf, initrd: ..., cmdline: "counter 500000"}
//     memory: 2G
//     vcpus: 4
//     transport: tcp              # or rdma: verbs queue pairs (docs/rdma.md)
//     rdmaSealed: true            # rdma only: encrypt frames as tcp does (default true)
//     secretFile: /etc/shoal/demo.secret
//     failureTimeout: 1s          # a member silent this long is lost (500ms .. 60s)
//     pageHold: 200us             # a page that arrived stays at least this long (20us .. 1s)
//     placement: auto             # the default; static: vCPUs stay where the spec puts them
//     disks: [/srv/root.img, "/srv/data.img,ro"]  # virtio-blk on the first host (docs/devices.md)
//     nets: ["tap=tap0"]          # virtio-net on the first host's tap (docs/devices.md)
//     channel: /run/demo.sock     # the channel: a Unix socket on the first host
//     hosts:
//       - {name: a, address: "10.0.0.1:7000", vcpus: [0, 1], memory: even, zeroPool: 64M,
//          rdmaDevice: mlx5_0}    # rdma only; default: the first device with an active port
//       - {name: b, address: "10.0.0.2:7000", vcpus: "2-3", memory: even}
//
// parse_pod_spec() reports every problem, each with its path
// ("spec.hosts[1].address: expected HOST:PORT, got 'b'"), and returns no spec if there is any.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/virtio_devices.hpp"

namespace shoal {

inline constexpr const char* kPodApiVersion = "shoal/v1";
inline constexpr uint64_t kPodSpecMaxBytes = 1 << 20;

struct MemoryRange {
  uint64_t start;  // guest-physical RAM offset (0 = first byte of guest RAM)
  uint64_t size;
};

struct PodHost {
  std::string name;
  std::string host;  // address part of HOST:PORT
  uint16_t port = 0;
  std::vector<int> vcpus;         // sorted
  std::vector<MemoryRange> home;  // the guest memory this host is home for
  uint64_t zero_pool_bytes = 64ull << 20;
  // Host memory this member may populate: guest pages it holds plus its zero pool. 0: the
  // host's physical memory (what `shoal run` assumes without --memory-budget).
  uint64_t memory_budget_bytes = 0;
  // The most vCPUs this host runs at once, counting ones moved here (docs/vcpu-migration.md).
  // 0 in a spec means the default: its spec'd vCPUs + 1.
  int max_vcpus = 0;
  std::string rdma_device;  // empty: the first verbs device with an active port
};

enum class PodTransport { kTcp, kRdma };
// static: vCPUs stay where the spec (or `pod move`) puts them; auto (the default): the
// placement policy moves them too, to the host their pages come from (pod/placement.hpp).
enum class PodPlacement { kStatic, kAuto };

struct PodSpec {
  std::string name;
  std::string kernel, initrd, cmdline;
  uint64_t memory = 0;
  int vcpus = 0;
  PodTransport transport = PodTransport::kTcp;
  bool rdma_sealed = true;  // transport rdma: frames encrypted as over TCP (docs/security.md)
  std::string secret_file;
  uint64_t failure_timeout_ms = 1000;
  // How long a page that arrived stays before another host may take it (memory/page_holds.hpp);
  // up to 16 times this while the vCPU that faulted on it goes on faulting.
  uint64_t page_hold_us = 200;
  PodPlacement placement = PodPlacement::kAuto;
  // virtio-blk devices, opened by the first host (devices live there); the others reach them
  // through coherent memory and forwarded MMIO exits.
  std::vector<DiskOptions> disks;
  // virtio-net devices on the first host's taps, and the channel's socket there (empty: none);
  // reached from other hosts as the disks are.
  std::vector<NetOptions> nets;
  std::string channel;
  std::vector<PodHost> hosts;

  VirtioDeviceOptions virtio() const { return {disks, nets, channel}; }
};

struct PodSpecResult {
  std::optional<PodSpec> spec;
  std::vector<std::string> errors;  // "path: problem", in document order
};

PodSpecResult parse_pod_spec(const std::string& yaml_text);
PodSpecResult load_pod_spec(const std::string& path);

}  // namespace shoal

// A KVM exit decoded into a value, so the handling logic can be fed fake exits in tests.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <variant>

namespace shoal {

struct IoExit {
  uint16_t port;
  uint8_t size;  // bytes per access: 1, 2 or 4
  bool write;
  uint32_t count;           // > 1 for rep ins/outs
  std::span<uint8_t> data;  // size * count bytes inside kvm_run
};

struct MmioExit {
  uint64_t address;
  bool write;
  std::span<uint8_t> data;  // 1..8 bytes inside kvm_run
};

struct HaltExit {};
struct ShutdownExit {};     // triple fault
struct InterruptedExit {};  // KVM_RUN returned EINTR (kicked) or EAGAIN, or KVM_EXIT_INTR
struct SystemEventExit {
  uint32_t type;  // KVM_SYSTEM_EVENT_*
};
struct FailEntryExit {
  uint64_t reason;
  uint32_t cpu;
};
struct InternalErrorExit {
  uint32_t suberror;
  std::array<uint64_t, 4> data;
  uint32_t ndata;
};
struct RunErrorExit {
  int error;  // errno of KVM_RUN
};
struct UnknownExit {
  uint32_t reason;
};

using VcpuExit =
    std::variant<IoExit, MmioExit, HaltExit, ShutdownExit, InterruptedExit, SystemEventExit,
                 FailEntryExit, InternalErrorExit, RunErrorExit, UnknownExit>;

// Decodes `run` after a successful KVM_RUN. `run_size` (the kvm_run mapping's size) bounds
// the I/O data the kernel points at; an out-of-bounds pointer decodes as UnknownExit.
VcpuExit decode_exit(kvm_run& run, size_t run_size);

// One line naming an exit, for errors and logs ("KVM_EXIT_SHUTDOWN (triple fault)").
std::string describe_exit(const VcpuExit& exit);

}  // namespace shoal

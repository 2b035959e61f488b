// Whether a vCPU thread of this process sleeps in KVM's halt: the guest CPU it runs executed
// HLT (it idles) and KVM blocks the thread until an interrupt for it arrives. A page held for
// such a thread (memory/page_holds.hpp) is not being used, and another host may take it now.
#pragma once

#include <cstdint>
#include <string_view>

namespace shoal {

// From /proc/self/task/TID/wchan, the kernel function the thread sleeps in: KVM's
// kvm_vcpu_block (or kvm_vcpu_halt, where the compiler merged them). False whenever that
// cannot be told (no procfs, symbol names hidden: wchan reads "0", the thread is running or
// gone), so a hold is never cut short on a guess. A thread waiting for a page sleeps in
// handle_userfault, not here.
bool thread_halted_in_kvm(uint32_t tid);

// The name test alone, for unit tests: `wchan` is what the file read.
bool wchan_is_kvm_halt(std::string_view wchan);

}  // namespace shoal

// KVM ioctls whose argument ends in a flexible array. The kernel headers declare those with
// __DECLARE_FLEX_ARRAY, which in C++ adds a 1-byte empty struct: sizeof(kvm_cpuid2) becomes
// 12 instead of 8, so both the ioctl number (it encodes the size) and the entries' offset
// would be wrong. These headers have the C layout.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

namespace shoal::kvm_abi {

struct CpuidHeader {  // followed by kvm_cpuid_entry2[nent]
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {  // followed by kvm_msr_entry[nmsrs]
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);

}  // namespace shoal::kvm_abi

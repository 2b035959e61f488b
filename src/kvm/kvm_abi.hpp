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
struct MsrListHeader {  // followed by uint32_t indices[nmsrs]
  uint32_t nmsrs;
};
// kvm_xsave ends in a flexible array too; the legacy ioctls move exactly its 4 KiB region.
struct Xsave {
  uint32_t region[1024];
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8 && sizeof(MsrListHeader) == 4);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, Xsave);
inline constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, Xsave);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);

}  // namespace shoal::kvm_abi

// libFuzzer target: the ELF program-header and note walker behind PVH boot.
#include <cstddef>
#include <cstdint>

#include "arch/kernel_loader.hpp"
#include "arch/pvh_elf.hpp"
#include "shoal/size.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto ram = shoal::GuestRam::reserve(64 * shoal::MiB, 48);
  std::span<const uint8_t> image(data, size);
  if (shoal::detect_kernel_format(image) == shoal::KernelFormat::kPvhElf)
    (void)shoal::load_pvh_elf(*ram, shoal::BootInputs{image, {}, "hello", 0xe0000});
  return 0;
}

// libFuzzer target: the bzImage setup-header parser and loader on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "arch/bzimage.hpp"
#include "shoal/size.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto ram = shoal::GuestRam::reserve(128 * shoal::MiB, 48);
  std::span<const uint8_t> image(data, size);
  auto info = shoal::parse_bzimage(image);
  if (info.ok()) {
    (void)shoal::build_zero_page(*info, image, shoal::build_e820(ram->regions()), 16, 0, 0);
    (void)shoal::load_bzimage(*ram, shoal::BootInputs{image, {}, "console=ttyS0", 0xe0000});
  }
  return 0;
}

#include "arch/bzimage.hpp"

#include <cstdio>
#include <cstring>

#include "arch/boot_layout.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr size_t kHeaderOffset = 0x1f1;
constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kBootFlag = 0xaa55;

template <class T>
T load_le(std::span<const uint8_t> b, size_t off) {
  T v{};
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

std::string protocol_name(uint16_t p) {
  char s[16];
  std::snprintf(s, sizeof s, "%u.%02u", p >> 8, p & 0xff);
  return s;
}

}  // namespace

bool looks_like_bzimage(std::span<const uint8_t> image) {
  return image.size() >= 0x210 && load_le<uint16_t>(image, 0x1fe) == kBootFlag &&
         load_le<uint32_t>(image, 0x202) == kHdrSMagic;
}

Result<BzImageInfo> parse_bzimage(std::span<const uint8_t> image) {
  if (!looks_like_bzimage(image)) return Error("not a bzImage (no 'HdrS' setup header)");
  BzImageInfo info{};
  info.protocol = load_le<uint16_t>(image, 0x206);
  if (info.protocol < kMinBootProtocol)
    return Error("bzImage boot protocol " + protocol_name(info.protocol) +
                 " is too old: shoal needs " + protocol_name(kMinBootProtocol) +
                 " or later (64-bit entry)");
  info.header_end = 0x202 + image[0x201];
  const size_t copy = std::min(info.header_end - kHeaderOffset, sizeof(setup_header));
  if (info.header_end > image.size()) return Error("bzImage setup header is truncated");
  std::memcpy(&info.header, image.data() + kHeaderOffset, copy);
  const unsigned setup_sects = info.header.setup_sects == 0 ? 4 : info.header.setup_sects;
  info.setup_bytes = (setup_sects + 1) * 512;
  if (info.setup_bytes >= image.size())
    return Error("bzImage is truncated: " + std::to_string(image.size()) +
                 " bytes, setup alone is " + std::to_string(info.setup_bytes));
  if (!(info.header.loadflags & LOADED_HIGH))
    return Error("zImage kernels (not loaded high) are not supported");
  if (!(info.header.xloadflags & XLF_KERNEL_64))
    return Error("bzImage has no 64-bit entry point (xloadflags lacks XLF_KERNEL_64)");
  return info;
}

Result<boot_params> build_zero_page(const BzImageInfo& info, std::span<const uint8_t> image,
                                    const std::vector<E820Entry>& e820, uint32_t cmdline_size,
                                    uint64_t initrd_addr, uint64_t initrd_size) {
  boot_params zp{};
  std::memcpy(&zp.hdr, image.data() + kHeaderOffset,
              std::min(info.header_end - kHeaderOffset, sizeof(setup_header)));
  zp.hdr.type_of_loader = 0xff;  // undefined loader
  zp.hdr.vid_mode = 0xffff;      // "normal"
  zp.hdr.loadflags |= CAN_USE_HEAP;
  zp.hdr.heap_end_ptr = 0xfe00;
  zp.hdr.cmd_line_ptr = static_cast<uint32_t>(boot::kCmdlineAddr);
  zp.hdr.cmdline_size = cmdline_size;
  zp.hdr.ramdisk_image = static_cast<uint32_t>(initrd_addr);
  zp.hdr.ramdisk_size = static_cast<uint32_t>(initrd_size);
  if (e820.size() > E820_MAX_ENTRIES_ZEROPAGE) return Error("e820 map has too many entries");
  for (size_t i = 0; i < e820.size(); ++i) {
    zp.e820_table[i].addr = e820[i].addr;
    zp.e820_table[i].size = e820[i].size;
    zp.e820_table[i].type = static_cast<uint32_t>(e820[i].type);
  }
  zp.e820_entries = static_cast<uint8_t>(e820.size());
  return zp;
}

Result<BootPlan> load_bzimage(GuestRam& ram, const BootInputs& in) {
  auto info = parse_bzimage(in.kernel);
  if (!info) return info.error();
  const auto kernel = in.kernel.subspan(info->setup_bytes);
  // The kernel decompresses in place and needs init_size bytes from its load address.
  const uint64_t footprint = std::max<uint64_t>(kernel.size(), info->header.init_size);
  const uint64_t kernel_end = boot::kKernelAddr + footprint;
  if (kernel_end > ram.low_end())
    return Error("kernel needs " + format_size(footprint) +
                 " from 1 MiB; guest RAM below 4 GiB is " + format_size(ram.low_end()));
  SHOAL_TRY(ram.write(boot::kKernelAddr, kernel), "load kernel");

  // The header's cmdline_size excludes the terminating NUL.
  const uint32_t max_cmdline = info->header.cmdline_size;
  if (in.cmdline.size() > max_cmdline)
    return Error("command line is " + std::to_string(in.cmdline.size()) +
                 " bytes; this kernel accepts at most " + std::to_string(max_cmdline));
  std::vector<uint8_t> cmdline(in.cmdline.begin(), in.cmdline.end());
  cmdline.push_back(0);
  SHOAL_TRY(ram.write(boot::kCmdlineAddr, cmdline), "load command line");

  uint64_t initrd_addr = 0;
  if (!in.initrd.empty()) {
    const uint64_t limit =
        std::min<uint64_t>(uint64_t{info->header.initrd_addr_max} + 1, ram.low_end());
    auto placed = place_initrd(in.initrd.size(), kernel_end, limit);
    if (!placed) return placed.error();
    initrd_addr = *placed;
    SHOAL_TRY(ram.write(initrd_addr, in.initrd), "load initrd");
  }

  BootPlan plan;
  plan.mode = EntryMode::kLinux64;
  plan.entry = boot::kKernelAddr + 0x200;  // startup_64
  plan.boot_info = boot::kZeroPageAddr;
  plan.e820 = build_e820(ram.regions());
  plan.description = "bzImage, boot protocol " + protocol_name(info->protocol);
  auto zp = build_zero_page(*info, in.kernel, plan.e820, static_cast<uint32_t>(in.cmdline.size()),
                            initrd_addr, in.initrd.size());
  if (!zp) return zp.error();
  // Protocol 2.14 added acpi_rsdp_addr; older kernels find the RSDP by scanning 0xe0000.
  if (info->protocol >= 0x020e) zp->acpi_rsdp_addr = in.acpi_rsdp;
  SHOAL_TRY(ram.write(boot::kZeroPageAddr, std::span(reinterpret_cast<const uint8_t*>(&zp.value()),
                                                     sizeof(boot_params))),
            "write boot_params");
  return plan;
}

Result<uint64_t> place_initrd(uint64_t size, uint64_t lowest, uint64_t limit) {
  const uint64_t start = limit >= size ? ((limit - size) & ~(kPageSize - 1)) : 0;
  if (limit < size || start < lowest)
    return Error("initrd of " + std::to_string(size) + " bytes does not fit in guest RAM between " +
                 "the kernel's end (" + format_size(lowest & ~(kPageSize - 1)) + ") and " +
                 format_size(limit) + "; give the guest more --memory");
  return start;
}

}  // namespace shoal

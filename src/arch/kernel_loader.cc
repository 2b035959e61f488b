#include "arch/kernel_loader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/acpi.hpp"
#include "arch/boot_layout.hpp"
#include "arch/bzimage.hpp"
#include "arch/mptable.hpp"
#include "arch/platform_ports.hpp"
#include "arch/pvh_elf.hpp"
#include "arch/x86_cpu.hpp"
#include "shoal/size.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

Result<std::vector<uint8_t>> read_file(const std::string& path, const std::string& what,
                                       uint64_t limit) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(what + " " + path);
  struct stat st {};
  if (fstat(fd.get(), &st) < 0) return errno_error(what + " " + path);
  if (!S_ISREG(st.st_mode)) return Error(what + " " + path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > limit)
    return Error(what + " " + path + ": " + format_size(st.st_size) + " is larger than the " +
                 format_size(limit) + " limit");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(what + " " + path);
    if (n == 0) return Error(what + " " + path + ": file shrank while being read");
    done += static_cast<size_t>(n);
  }
  return bytes;
}

KernelFormat detect_kernel_format(std::span<const uint8_t> image) {
  if (looks_like_bzimage(image)) return KernelFormat::kBzImage;
  if (looks_like_elf(image)) return KernelFormat::kPvhElf;
  return KernelFormat::kUnknown;
}

Result<BootPlan> load_guest(GuestRam& ram, const BootInputs& inputs, int vcpus) {
  BootInputs in = inputs;
  in.acpi_rsdp = boot::kAcpiAddr;
  Result<BootPlan> plan = Error("");
  switch (detect_kernel_format(in.kernel)) {
    case KernelFormat::kBzImage:
      plan = load_bzimage(ram, in);
      break;
    case KernelFormat::kPvhElf:
      plan = load_pvh_elf(ram, in);
      break;
    case KernelFormat::kUnknown:
      return Error("neither a bzImage nor an ELF kernel with a PVH entry");
  }
  if (!plan) return plan.error();
  auto mptable = build_mptable(boot::kEbdaAddr, vcpus);
  if (!mptable) return mptable.error();
  SHOAL_TRY(ram.write(boot::kEbdaAddr, *mptable), "write MP table");
  // The BIOS data area's EBDA segment pointer, where Linux looks for the MP table first.
  const uint16_t ebda_segment = boot::kEbdaAddr >> 4;
  SHOAL_TRY(ram.write(0x40e, std::span(reinterpret_cast<const uint8_t*>(&ebda_segment), 2)),
            "write EBDA pointer");
  auto acpi = build_acpi_tables(in.acpi_rsdp, vcpus, in.virtio_mmio);
  if (!acpi) return acpi.error();
  SHOAL_TRY(ram.write(acpi->rsdp_addr, acpi->bytes), "write ACPI tables");
  SHOAL_TRY(ram.write(boot::kResetVectorAddr, reset_vector_stub()), "write reset vector");
  SHOAL_TRY(write_boot_tables(ram, *plan), "boot tables");
  return plan;
}

std::vector<uint8_t> reset_vector_stub() {
  // Linux on a hardware-reduced ACPI platform without EFI reboots by trying EFI (absent), then
  // jumping to the BIOS reset vector in real mode (machine_real_restart). There is no BIOS;
  // this stub is what answers there: it writes the ACPI reset register, which ends or restarts
  // the machine, and halts.
  const uint16_t port = platform::kAcpiReset;
  return {0xba,
          static_cast<uint8_t>(port),
          static_cast<uint8_t>(port >> 8),  // mov dx, port
          0xb0,
          platform::kAcpiResetValue,  // mov al, value
          0xee,                       // out dx, al
          0xf4,                       // hlt
          0xeb,
          0xfd};  // jmp hlt
}

Result<BootPlan> load_guest_files(GuestRam& ram, const std::string& kernel,
                                  const std::string& initrd, const std::string& cmdline, int vcpus,
                                  uint32_t virtio_mmio) {
  constexpr uint64_t kMaxKernelFile = 1ull << 30;
  auto kernel_bytes = read_file(kernel, "kernel", kMaxKernelFile);
  if (!kernel_bytes) return kernel_bytes.error();
  std::vector<uint8_t> initrd_bytes;
  if (!initrd.empty()) {
    auto bytes = read_file(initrd, "initrd", ram.size());
    if (!bytes) return bytes.error();
    initrd_bytes = std::move(*bytes);
  }
  auto plan =
      load_guest(ram, BootInputs{*kernel_bytes, initrd_bytes, cmdline, 0, virtio_mmio}, vcpus);
  if (!plan) return plan.error().context(kernel);
  return plan;
}

}  // namespace shoal

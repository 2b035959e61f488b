#include "arch/pvh_elf.hpp"

#include <elf.h>

#include <cstring>
#include <functional>

#include "arch/boot_layout.hpp"
#include "shoal/size.hpp"

namespace shoal {

namespace {

struct Segment {
  uint32_t type;
  uint64_t offset, paddr, filesz, memsz;
};

// Reads the program headers of a 32- or 64-bit ELF into one shape.
template <class Ehdr, class Phdr>
Result<std::vector<Segment>> read_segments(std::span<const uint8_t> image) {
  if (image.size() < sizeof(Ehdr)) return Error("ELF header is truncated");
  Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof eh);
  if (eh.e_machine != EM_X86_64 && eh.e_machine != EM_386)
    return Error("ELF machine " + std::to_string(eh.e_machine) + " is not x86");
  if (eh.e_phentsize != sizeof(Phdr) || eh.e_phnum == 0 || eh.e_phnum > 256)
    return Error("ELF has no usable program headers");
  std::vector<Segment> segs;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    const uint64_t off = eh.e_phoff + uint64_t{i} * sizeof(Phdr);
    if (off > image.size() || image.size() - off < sizeof(Phdr))
      return Error("ELF program header " + std::to_string(i) + " is outside the file");
    Phdr ph;
    std::memcpy(&ph, image.data() + off, sizeof ph);
    if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset)
      return Error("ELF segment " + std::to_string(i) + " extends past the end of the file");
    if (ph.p_type == PT_LOAD && ph.p_filesz > ph.p_memsz)
      return Error("ELF segment " + std::to_string(i) + " has filesz > memsz");
    segs.push_back({ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz});
  }
  return segs;
}

// Calls `fn(name, type, desc)` for each note in a PT_NOTE segment.
Status for_each_note(
    std::span<const uint8_t> notes,
    const std::function<void(std::string_view, uint32_t, std::span<const uint8_t>)>& fn) {
  size_t pos = 0;
  auto align4 = [](uint64_t v) { return (v + 3) & ~uint64_t{3}; };
  while (notes.size() - pos >= 12) {
    uint32_t namesz, descsz, type;
    std::memcpy(&namesz, notes.data() + pos, 4);
    std::memcpy(&descsz, notes.data() + pos + 4, 4);
    std::memcpy(&type, notes.data() + pos + 8, 4);
    pos += 12;
    const uint64_t name_end = pos + align4(namesz);
    const uint64_t desc_end = name_end + align4(descsz);
    if (name_end > notes.size() || name_end + descsz > notes.size())
      return Error("ELF note is truncated");
    std::string_view name(reinterpret_cast<const char*>(notes.data() + pos),
                          namesz > 0 ? namesz - 1 : 0);
    fn(name, type, notes.subspan(name_end, descsz));
    pos = std::min<uint64_t>(desc_end, notes.size());
  }
  return {};
}

Result<std::vector<Segment>> segments_of(std::span<const uint8_t> image) {
  if (image[EI_CLASS] == ELFCLASS64) return read_segments<Elf64_Ehdr, Elf64_Phdr>(image);
  if (image[EI_CLASS] == ELFCLASS32) return read_segments<Elf32_Ehdr, Elf32_Phdr>(image);
  return Error("ELF class " + std::to_string(image[EI_CLASS]) + " is neither 32 nor 64-bit");
}

}  // namespace

bool looks_like_elf(std::span<const uint8_t> image) {
  return image.size() >= EI_NIDENT && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

Result<PvhElfInfo> parse_pvh_elf(std::span<const uint8_t> image) {
  if (!looks_like_elf(image)) return Error("not an ELF file");
  auto segs = segments_of(image);
  if (!segs) return segs.error();
  PvhElfInfo info{0, false, 0};
  bool has_entry = false;
  for (const Segment& s : *segs) {
    if (s.type == PT_LOAD) info.image_end = std::max(info.image_end, s.paddr + s.memsz);
    if (s.type != PT_NOTE) continue;
    SHOAL_TRY(
        for_each_note(image.subspan(s.offset, s.filesz),
                      [&](std::string_view name, uint32_t type, std::span<const uint8_t> desc) {
                        if (name == "Xen" && type == kXenElfnotePhys32Entry && desc.size() >= 4) {
                          std::memcpy(&info.entry, desc.data(), 4);
                          has_entry = true;
                        }
                        if (name == "SHOAL" && type == kShoalNoteAllVcpusAtEntry)
                          info.all_vcpus_at_entry = true;
                      }),
        "PVH ELF");
  }
  if (!has_entry)
    return Error(
        "ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); "
        "build it with CONFIG_PVH=y or pass a bzImage");
  return info;
}

Result<BootPlan> load_pvh_elf(GuestRam& ram, const BootInputs& in) {
  auto info = parse_pvh_elf(in.kernel);
  if (!info) return info.error();
  auto segs = segments_of(in.kernel);
  for (const Segment& s : *segs) {
    if (s.type != PT_LOAD || s.memsz == 0) continue;
    if (ram.host(s.paddr, s.memsz) == nullptr)
      return Error("ELF segment at " + format_hex(s.paddr) + " (" + format_size(s.memsz) +
                   ") does not fit in guest RAM");
    // The bss needs no clearing: fresh guest RAM reads as zero, and writing zeros would only
    // populate pages the guest may never touch.
    SHOAL_TRY(ram.write(s.paddr, in.kernel.subspan(s.offset, s.filesz)), "load ELF segment");
  }

  BootPlan plan;
  plan.mode = EntryMode::kPvh32;
  plan.entry = info->entry;
  plan.boot_info = boot::kPvhStartInfoAddr;
  plan.all_vcpus_at_entry = info->all_vcpus_at_entry;
  plan.e820 = build_e820(ram.regions());
  plan.description = "ELF, PVH entry " + format_hex(info->entry);

  // hvm_start_info, then the memmap, then the module list, all in one page.
  HvmStartInfo si{};
  si.magic = kHvmStartMagic;
  si.version = 1;
  si.cmdline_paddr = boot::kCmdlineAddr;
  si.rsdp_paddr = in.acpi_rsdp;
  const uint64_t memmap_addr = boot::kPvhStartInfoAddr + sizeof(HvmStartInfo);
  std::vector<HvmMemmapEntry> memmap;
  for (const E820Entry& e : plan.e820)
    memmap.push_back({e.addr, e.size, static_cast<uint32_t>(e.type), 0});
  const uint64_t modlist_addr = memmap_addr + memmap.size() * sizeof(HvmMemmapEntry);
  if (modlist_addr + sizeof(HvmModlistEntry) > boot::kPvhStartInfoAddr + kPageSize)
    return Error("PVH memmap has too many entries");
  si.memmap_paddr = memmap_addr;
  si.memmap_entries = static_cast<uint32_t>(memmap.size());

  if (in.cmdline.size() + 1 > boot::kCmdlineMax)
    return Error("command line is " + std::to_string(in.cmdline.size()) + " bytes; at most " +
                 std::to_string(boot::kCmdlineMax - 1));
  std::vector<uint8_t> cmdline(in.cmdline.begin(), in.cmdline.end());
  cmdline.push_back(0);
  SHOAL_TRY(ram.write(boot::kCmdlineAddr, cmdline), "load command line");

  if (!in.initrd.empty()) {
    const uint64_t lowest = std::max(info->image_end, boot::kKernelAddr);
    auto placed =
        place_initrd(in.initrd.size(), (lowest + kPageSize - 1) & ~(kPageSize - 1), ram.low_end());
    if (!placed) return placed.error();
    SHOAL_TRY(ram.write(*placed, in.initrd), "load initrd");
    HvmModlistEntry mod{*placed, in.initrd.size(), 0, 0};
    SHOAL_TRY(
        ram.write(modlist_addr, std::span(reinterpret_cast<const uint8_t*>(&mod), sizeof mod)),
        "write PVH module list");
    si.nr_modules = 1;
    si.modlist_paddr = modlist_addr;
  }
  SHOAL_TRY(ram.write(memmap_addr, std::span(reinterpret_cast<const uint8_t*>(memmap.data()),
                                             memmap.size() * sizeof(HvmMemmapEntry))),
            "write PVH memmap");
  SHOAL_TRY(ram.write(boot::kPvhStartInfoAddr,
                      std::span(reinterpret_cast<const uint8_t*>(&si), sizeof si)),
            "write hvm_start_info");
  return plan;
}

}  // namespace shoal

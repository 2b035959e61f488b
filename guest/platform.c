/* Console output, exit, and discovery of the command line, RAM and vCPU count. */
#include "guest.h"

void put_char(char c) {
  if (c == '\n') put_char('\r');
  while (!(inb(COM1 + 5) & 0x20)) cpu_relax(); /* LSR.THRE: a real 16550 may be busy */
  outb(COM1, (uint8_t)c);
}

void put_str(const char* s) {
  while (*s) put_char(*s++);
}

void put_u64(uint64_t v) {
  char buf[21];
  int i = 20;
  buf[i] = 0;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  put_str(buf + i);
}

void put_hex(uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  char buf[19];
  buf[0] = '0';
  buf[1] = 'x';
  for (int i = 0; i < 16; ++i) buf[2 + i] = digits[(v >> (60 - 4 * i)) & 0xf];
  buf[18] = 0;
  put_str(buf);
}

_Noreturn void guest_exit(int code) {
  outb(DEBUG_EXIT_PORT, (uint8_t)code);
  for (;;) cpu_relax();
}

/* Called at CPL0 by the exception stubs. */
void guest_exception(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cs, uint64_t rflags) {
  put_str("shoal-guest: exception ");
  put_u64(vector);
  put_str(" error ");
  put_hex(error);
  put_str(" at rip ");
  put_hex(rip);
  put_str(" cs ");
  put_hex(cs);
  put_str(" rflags ");
  put_hex(rflags);
  put_str("\n");
  guest_exit(0x70);
}

struct hvm_start_info {
  uint32_t magic, version, flags, nr_modules;
  uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
  uint32_t memmap_entries, reserved;
};
struct hvm_memmap_entry {
  uint64_t addr, size;
  uint32_t type, reserved;
};

static int is_mp_floating(const uint8_t* p) {
  if (p[0] != '_' || p[1] != 'M' || p[2] != 'P' || p[3] != '_') return 0;
  uint8_t sum = 0;
  for (int i = 0; i < 16; ++i) sum = (uint8_t)(sum + p[i]);
  return sum == 0;
}

static uint32_t count_mp_cpus(void) {
  const uint64_t ranges[][2] = {{0x9fc00, 0xa0000}, {0xf0000, 0x100000}};
  for (int r = 0; r < 2; ++r) {
    for (uint64_t a = ranges[r][0]; a < ranges[r][1]; a += 16) {
      const uint8_t* fp = (const uint8_t*)a;
      if (!is_mp_floating(fp)) continue;
      const uint8_t* table = (const uint8_t*)(uint64_t) * (const uint32_t*)(fp + 4);
      if (!table || table[0] != 'P' || table[1] != 'C' || table[2] != 'M' || table[3] != 'P')
        return 1;
      const uint16_t entries = *(const uint16_t*)(table + 34);
      const uint8_t* e = table + 44;
      uint32_t cpus = 0;
      for (uint16_t i = 0; i < entries; ++i) {
        if (e[0] == 0) {
          if (e[3] & 1) ++cpus;
          e += 20;
        } else {
          e += 8;
        }
      }
      return cpus ? cpus : 1;
    }
  }
  return 1;
}

void discover_platform(uint64_t start_info, struct platform* out) {
  const struct hvm_start_info* si = (const struct hvm_start_info*)start_info;
  out->cmdline = "";
  out->ram_end = 0;
  if (si && si->magic == 0x336ec578) {
    if (si->cmdline_paddr) out->cmdline = (const char*)si->cmdline_paddr;
    const struct hvm_memmap_entry* m = (const struct hvm_memmap_entry*)si->memmap_paddr;
    for (uint32_t i = 0; si->version >= 1 && i < si->memmap_entries; ++i)
      if (m[i].type == 1 && m[i].addr <= 0x100000 && m[i].addr + m[i].size > 0x100000)
        out->ram_end = m[i].addr + m[i].size;
  }
  out->ncpus = count_mp_cpus();
}

/*
 * `remote-walk`: vCPU 0 builds a page directory near the top of RAM and hooks it into the
 * boot page tables (PDPT entry 4: virtual 4..5 GiB, unused until then), and every other vCPU
 * then reads through it. In a pod the other vCPUs run on other hosts, whose page walks (the
 * CPU's, or KVM's under shadow paging) read the directory from guest RAM that only host 0's
 * vCPU has touched: the walk must find that RAM there too (memory/ram_slots.hpp), not a hole
 * that turns into a page fault. Needs 128 MiB of RAM or more: the directory sits above the
 * boot slot's 64 MiB.
 */
#include "guest.h"

#define TWO_MIB (2ull << 20)
#define WALK_VIRTUAL (4ull << 30)
#define WALK_MAGIC 0x5ea1ed0f7ab1e5ull

extern uint64_t pdpt[512]; /* entry.S: the boot map's page-directory-pointer table */

static uint64_t walk_seen[64] __attribute__((aligned(64)));

int run_remote_walk(uint32_t cpu, uint32_t ncpus, uint64_t ram_end, void (*barrier)(int)) {
  if (ncpus < 2 || ncpus > 64 || ram_end < (128ull << 20)) {
    if (cpu != 0) return -1;
    put_str("shoal-guest: remote-walk needs 2 to 64 vCPUs and 128 MiB of RAM\n");
    return 1;
  }
  /* Both 2 MiB aligned, below 4 GiB (so the identity map reaches them for vCPU 0's writes). */
  const uint64_t directory = (ram_end & ~(TWO_MIB - 1)) - 2 * TWO_MIB;
  const uint64_t data = directory + TWO_MIB;
  if (cpu == 0) {
    volatile uint64_t* d = (volatile uint64_t*)data;
    for (uint32_t c = 0; c < ncpus; ++c) d[c] = WALK_MAGIC ^ c;
    volatile uint64_t* pd = (volatile uint64_t*)directory;
    pd[0] = data | 0xe7; /* present, writable, user, accessed, dirty, 2 MiB */
    /* Not present until now, so no CPU can have cached anything for it: no flush needed. */
    __atomic_store_n(&pdpt[4], directory | 0x27, __ATOMIC_RELEASE);
  }
  barrier(1);
  const volatile uint64_t* through = (const volatile uint64_t*)WALK_VIRTUAL;
  walk_seen[cpu] = through[cpu];
  barrier(2);
  if (cpu != 0) return -1;
  uint64_t bad = 0;
  for (uint32_t c = 0; c < ncpus; ++c) bad += walk_seen[c] != (WALK_MAGIC ^ c);
  put_str("shoal-guest: remote-walk vcpus=");
  put_u64(ncpus);
  put_str(" directory=");
  put_hex(directory);
  put_str(" bad=");
  put_u64(bad);
  put_str("\n");
  return bad == 0 ? 0 : 1;
}

/*
 * The test guest's workloads, run at CPL3 on every vCPU. The command line picks one:
 *   touch MIB      each vCPU writes every ncpus-th page of MIB MiB from 16 MiB; vCPU 0
 *                  verifies all pages and prints a checksum
 *   touch-random MIB  the same pages in a pseudo-random order (a fixed permutation)
 *   touch-shared MIB  every vCPU writes its own word in every page (all fault the same pages)
 *   discard MIB    vCPU 0 fills MIB MiB, has the VMM discard it (port 0x510), checks that it
 *                  reads back as zero, fills it again and checks that
 *   counter N      each vCPU does N `lock xadd` on four shared counters; the total is exact
 *   counter-total T  the same with T increments in all, split across the vCPUs
 *   handoff R      a token goes round the vCPUs R times; each holder checks the page the last
 *                  one wrote (acquire), writes its own (release) and passes the token on;
 *                  then every vCPU checksums the pages and vCPU 0 compares the checksums
 *   ipi N          each vCPU sends N IPIs round-robin to the others and counts those it gets
 *                  (guest/ipi.c); vCPU 0 prints sent, received and lost
 *   wander R       pairs of vCPUs pass a token and a 16-page data set R times (guest/wander.c)
 *   touch-restore MIB  each vCPU writes every ncpus-th page of MIB MiB from 16 MiB, each odd
 *                  page whole (no two words alike) and a zero into each even one (so half
 *                  are zero pages), then all wait until the restore counter (port 0x520) says
 *                  the guest was restored, then read every page back and vCPU 0 prints the
 *                  checksum and the cycles the read-back took (for bench/restore and the
 *                  snapshot tests)
 *   compute N      each vCPU runs N xorshift64* steps; all must agree
 *   blk-read MIB   vCPU 0 reads the first MIB MiB of the virtio-blk disk (guest/virtio_blk.c)
 *                  in 128 KiB requests, then MIB * 256 4 KiB requests in a fixed pseudo-random
 *                  order, 32 in flight; prints MB/s, IOPS, notifies and a checksum of the data
 *   blk-write MIB  the same with writes of a fixed pattern (and a flush after each pass), then
 *                  reads the MIB back and counts the words that differ from the pattern
 *   chan N [BYTES] vCPU 0 does N round trips of a BYTES-byte message (default 64, at most
 *                  4096) over a virtio-console device (guest/virtio_chan.c) with a peer on the
 *                  host that echoes every byte; checks the echoes and prints round trips per
 *                  second, notifies per message and the bytes that differ
 *   hello          print one line and exit (start-up timing)
 *   cpuid          print the feature words the vCPU sees (leaf 1 ECX/EDX, leaf 7 EBX/ECX)
 * vCPU 0 prints "shoal-guest: ... ok" or "... FAILED" and exits through the debug-exit port
 * with 0 or 1. Other vCPUs spin once done.
 */
#include "guest.h"

#define TOUCH_BASE (16ull << 20)
#define DISCARD_PORT 0x510         /* +0 gpa low, +4 gpa high, +8 pages, +12 command (1: discard) */
#define RESTORE_COUNTER_PORT 0x520 /* 32-bit read: times this guest was restored */

static inline void outl(uint16_t port, uint32_t v) {
  __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static struct platform plat;
static volatile uint32_t platform_ready;
static uint32_t barrier_count[4];
static uint64_t counters[4] __attribute__((aligned(64)));
static uint64_t compute_results[256];
static uint64_t handoff_token __attribute__((aligned(4096)));
static uint64_t handoff_page[512] __attribute__((aligned(4096)));
static uint64_t handoff_bad;
static uint64_t touch_cycles[256];

void* memset(void* d, int c, unsigned long n) {
  uint8_t* p = d;
  while (n--) *p++ = (uint8_t)c;
  return d;
}

/* All vCPUs wait here until every one of them has arrived. */
static void barrier(int which) {
  __atomic_add_fetch(&barrier_count[which], 1, __ATOMIC_ACQ_REL);
  while (__atomic_load_n(&barrier_count[which], __ATOMIC_ACQUIRE) < plat.ncpus) cpu_relax();
}

static int starts_with(const char* s, const char* word, const char** rest) {
  while (*word)
    if (*s++ != *word++) return 0;
  if (*s != 0 && *s != ' ') return 0;
  while (*s == ' ') ++s;
  *rest = s;
  return 1;
}

static uint64_t parse_u64(const char* s, uint64_t fallback) {
  if (*s < '0' || *s > '9') return fallback;
  uint64_t v = 0;
  while (*s >= '0' && *s <= '9') v = v * 10 + (uint64_t)(*s++ - '0');
  return v;
}

static uint64_t touch_pattern(uint64_t page) {
  return (page + 1) * 0x9E3779B97F4A7C15ull;
}

static int run_touch(uint32_t cpu, uint64_t mib, int random) {
  const uint64_t pages = mib << 8;
  if (cpu == 0 && TOUCH_BASE + (pages << 12) > plat.ram_end) {
    put_str("shoal-guest: touch ");
    put_u64(mib);
    put_str(" MiB does not fit: RAM ends at ");
    put_hex(plat.ram_end);
    put_str("\n");
    guest_exit(3);
  }
  barrier(1);
  const uint64_t t0 = rdtsc();
  for (uint64_t i = cpu; i < pages; i += plat.ncpus) {
    const uint64_t p = random ? random_order(i, pages) : i;
    *(volatile uint64_t*)(TOUCH_BASE + (p << 12)) = touch_pattern(p);
  }
  touch_cycles[cpu] = rdtsc() - t0;
  barrier(2);
  if (cpu != 0) return -1;
  uint64_t checksum = 0, bad = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    const volatile uint64_t* page = (const volatile uint64_t*)(TOUCH_BASE + (p << 12));
    const uint64_t v = page[0];
    if (v != touch_pattern(p) || page[256] != 0 || page[511] != 0) ++bad;
    checksum += v;
  }
  /* Pages past the touched range were never written: they must read as zero. */
  for (uint64_t p = pages; p < pages + 256 && TOUCH_BASE + ((p + 1) << 12) <= plat.ram_end; ++p)
    if (*(const volatile uint64_t*)(TOUCH_BASE + (p << 12)) != 0) ++bad;
  put_str(random ? "shoal-guest: touch-random mib=" : "shoal-guest: touch mib=");
  put_u64(mib);
  put_str(" pages=");
  put_u64(pages);
  put_str(" checksum=");
  put_hex(checksum);
  put_str(" bad=");
  put_u64(bad);
  put_str(" cycles=");
  put_u64(touch_cycles[0]);
  put_str("\n");
  return bad == 0 ? 0 : 1;
}

static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static uint64_t restore_sums[256];

/* splitmix64's finalizer: neighbouring inputs give unrelated words. */
static uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* `touch-restore MIB [HOT]`: with HOT, the first HOT MiB are the guest's working set: it keeps
 * writing them (each word with the value it has) while it waits for the restore, so a snapshot
 * that watches for a while records them, and reads back only those afterwards. */
static int run_touch_restore(uint32_t cpu, uint64_t mib, uint64_t hot_mib) {
  const uint64_t pages = mib << 8;
  const uint64_t hot = hot_mib != 0 && hot_mib < mib ? hot_mib << 8 : 0;
  if (cpu == 0 && TOUCH_BASE + (pages << 12) > plat.ram_end) {
    put_str("shoal-guest: touch-restore does not fit\n");
    guest_exit(3);
  }
  barrier(1);
  /* Odd pages: every word differs (nothing for a compressor to find); even pages: zeros. */
  for (uint64_t p = cpu; p < pages; p += plat.ncpus) {
    volatile uint64_t* page = (volatile uint64_t*)(TOUCH_BASE + (p << 12));
    if (p % 2 == 0) {
      page[0] = 0;
      continue;
    }
    for (uint64_t w = 0; w < 512; ++w) page[w] = mix64((p << 9) + w);
  }
  barrier(2);
  if (cpu == 0) {
    put_str("shoal-guest: touch-restore mib=");
    put_u64(mib);
    put_str(" written, waiting for a restore\n");
  }
  /* Each read is a VM exit: poll gently. */
  while (inl(RESTORE_COUNTER_PORT) == 0) {
    for (uint64_t p = cpu; p < hot; p += plat.ncpus) {
      volatile uint64_t* page = (volatile uint64_t*)(TOUCH_BASE + (p << 12));
      page[1] = page[1];
    }
    for (int i = 0; i < 10000; ++i) cpu_relax();
  }
  const uint64_t t0 = rdtsc();
  uint64_t sum = 0;
  for (uint64_t p = cpu; p < (hot != 0 ? hot : pages); p += plat.ncpus) {
    const volatile uint64_t* page = (const volatile uint64_t*)(TOUCH_BASE + (p << 12));
    sum += page[0] + page[511];
  }
  restore_sums[cpu] = sum;
  barrier(3);
  if (cpu != 0) return -1;
  const uint64_t cycles = rdtsc() - t0;
  uint64_t checksum = 0;
  for (uint32_t i = 0; i < plat.ncpus; ++i) checksum += restore_sums[i];
  put_str("shoal-guest: touch-restore mib=");
  put_u64(mib);
  if (hot != 0) {
    put_str(" hot=");
    put_u64(hot_mib);
  }
  put_str(" restored checksum=");
  put_hex(checksum);
  put_str(" cycles=");
  put_u64(cycles);
  put_str("\n");
  return 0;
}

static int fits(uint64_t mib) {
  if (TOUCH_BASE + (mib << 20) <= plat.ram_end) return 1;
  put_str("shoal-guest: ");
  put_u64(mib);
  put_str(" MiB does not fit in RAM\n");
  return 0;
}

static int run_touch_shared(uint32_t cpu, uint64_t mib) {
  const uint64_t pages = mib << 8;
  if (cpu == 0 && !fits(mib)) guest_exit(3);
  barrier(1);
  for (uint64_t p = 0; p < pages; ++p)
    *(volatile uint64_t*)(TOUCH_BASE + (p << 12) + cpu * 8) = touch_pattern(p) + cpu;
  barrier(2);
  if (cpu != 0) return -1;
  uint64_t bad = 0;
  for (uint64_t p = 0; p < pages; ++p)
    for (uint32_t c = 0; c < plat.ncpus; ++c)
      if (*(const volatile uint64_t*)(TOUCH_BASE + (p << 12) + c * 8) != touch_pattern(p) + c)
        ++bad;
  put_str("shoal-guest: touch-shared mib=");
  put_u64(mib);
  put_str(" vcpus=");
  put_u64(plat.ncpus);
  put_str(" bad=");
  put_u64(bad);
  put_str("\n");
  return bad == 0 ? 0 : 1;
}

static uint64_t fill_and_check(uint64_t pages, uint64_t salt) {
  uint64_t bad = 0;
  for (uint64_t p = 0; p < pages; ++p)
    *(volatile uint64_t*)(TOUCH_BASE + (p << 12) + 64) = touch_pattern(p) ^ salt;
  for (uint64_t p = 0; p < pages; ++p)
    if (*(const volatile uint64_t*)(TOUCH_BASE + (p << 12) + 64) != (touch_pattern(p) ^ salt))
      ++bad;
  return bad;
}

static int run_discard(uint32_t cpu, uint64_t mib) {
  if (cpu != 0) return -1;
  if (!fits(mib)) return 3;
  const uint64_t pages = mib << 8;
  uint64_t bad = fill_and_check(pages, 1);
  outl(DISCARD_PORT, (uint32_t)TOUCH_BASE);
  outl(DISCARD_PORT + 4, (uint32_t)(TOUCH_BASE >> 32));
  outl(DISCARD_PORT + 8, (uint32_t)pages);
  outl(DISCARD_PORT + 12, 1);
  uint64_t nonzero = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    const volatile uint64_t* page = (const volatile uint64_t*)(TOUCH_BASE + (p << 12));
    if (page[8] != 0 || page[0] != 0 || page[511] != 0) ++nonzero;
  }
  bad += fill_and_check(pages, 2);
  put_str("shoal-guest: discard mib=");
  put_u64(mib);
  put_str(" nonzero-after-discard=");
  put_u64(nonzero);
  put_str(" bad=");
  put_u64(bad);
  put_str("\n");
  return bad == 0 && nonzero == 0 ? 0 : 1;
}

/* `n` increments on this vCPU; `expected` in all. */
static int run_counter(uint32_t cpu, uint64_t n, uint64_t expected) {
  barrier(1);
  for (uint64_t i = 0; i < n; ++i) __atomic_fetch_add(&counters[i & 3], 1, __ATOMIC_SEQ_CST);
  barrier(2);
  if (cpu != 0) return -1;
  const uint64_t total = counters[0] + counters[1] + counters[2] + counters[3];
  put_str("shoal-guest: counter vcpus=");
  put_u64(plat.ncpus);
  put_str(" total=");
  put_u64(total);
  put_str(" expected=");
  put_u64(expected);
  put_str("\n");
  return total == expected ? 0 : 1;
}

static uint64_t handoff_stamp(uint64_t value, uint64_t word) {
  return value * 0x9E3779B97F4A7C15ull ^ word;
}

static int run_handoff(uint32_t cpu, uint64_t rounds) {
  const uint64_t n = plat.ncpus, last = rounds * n;
  uint64_t seen = 0, bad = 0;
  for (uint64_t v = cpu; v < last; v += n) {
    while (__atomic_load_n(&handoff_token, __ATOMIC_ACQUIRE) != v) cpu_relax();
    /* The previous holder wrote value v-1 over the whole page before releasing the token. */
    if (v > 0)
      for (uint64_t w = 0; w < 512; ++w) bad += handoff_page[w] != handoff_stamp(v - 1, w);
    for (uint64_t w = 0; w < 512; ++w) handoff_page[w] = handoff_stamp(v, w);
    ++seen;
    __atomic_store_n(&handoff_token, v + 1, __ATOMIC_RELEASE);
  }
  __atomic_fetch_add(&handoff_bad, bad, __ATOMIC_SEQ_CST);
  barrier(1);
  /* Every vCPU reads the final page; all must see the same bytes. */
  uint64_t sum = 0;
  for (uint64_t w = 0; w < 512; ++w) sum = sum * 31 + handoff_page[w];
  compute_results[cpu] = sum;
  barrier(2);
  if (cpu != 0) return -1;
  int same = 1;
  for (uint32_t i = 1; i < n; ++i) same &= compute_results[i] == compute_results[0];
  put_str("shoal-guest: handoff vcpus=");
  put_u64(n);
  put_str(" values=");
  put_u64(__atomic_load_n(&handoff_token, __ATOMIC_ACQUIRE));
  put_str(" bad=");
  put_u64(__atomic_load_n(&handoff_bad, __ATOMIC_ACQUIRE));
  put_str(" checksum=");
  put_hex(compute_results[0]);
  put_str(same ? " (all vCPUs agree)\n" : " (vCPUs disagree)\n");
  (void)seen;
  return same && handoff_bad == 0 && handoff_token == last ? 0 : 1;
}

static uint64_t xorshift_steps(uint64_t n) {
  uint64_t x = 0x2545F4914F6CDD1Dull;
  for (uint64_t i = 0; i < n; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
  }
  return x * 0x2545F4914F6CDD1Dull;
}

static int run_compute(uint32_t cpu, uint64_t n) {
  compute_results[cpu] = xorshift_steps(n);
  barrier(1);
  if (cpu != 0) return -1;
  int same = 1;
  for (uint32_t i = 1; i < plat.ncpus; ++i) same &= compute_results[i] == compute_results[0];
  put_str("shoal-guest: compute n=");
  put_u64(n);
  put_str(" result=");
  put_hex(compute_results[0]);
  put_str(same ? "\n" : " (vCPUs disagree)\n");
  return same ? 0 : 1;
}

void guest_main(uint64_t start_info, uint32_t cpu) {
  if (cpu == 0) {
    discover_platform(start_info, &plat);
    __atomic_store_n(&platform_ready, 1, __ATOMIC_RELEASE);
  } else {
    while (!__atomic_load_n(&platform_ready, __ATOMIC_ACQUIRE)) cpu_relax();
  }
  if (cpu >= plat.ncpus) return; /* not in the MP table: stay out of the barriers */
  barrier(0);

  const char* arg;
  int result;
  if (starts_with(plat.cmdline, "touch", &arg)) {
    result = run_touch(cpu, parse_u64(arg, 64), 0);
  } else if (starts_with(plat.cmdline, "touch-random", &arg)) {
    result = run_touch(cpu, parse_u64(arg, 64), 1);
  } else if (starts_with(plat.cmdline, "touch-restore", &arg)) {
    const uint64_t mib = parse_u64(arg, 64);
    while (*arg >= '0' && *arg <= '9') ++arg;
    while (*arg == ' ') ++arg;
    result = run_touch_restore(cpu, mib, parse_u64(arg, 0));
  } else if (starts_with(plat.cmdline, "touch-shared", &arg)) {
    result = run_touch_shared(cpu, parse_u64(arg, 64));
  } else if (starts_with(plat.cmdline, "discard", &arg)) {
    result = run_discard(cpu, parse_u64(arg, 16));
  } else if (starts_with(plat.cmdline, "counter-total", &arg)) {
    const uint64_t total = parse_u64(arg, 1000000);
    result = run_counter(cpu, total / plat.ncpus + (cpu < total % plat.ncpus), total);
  } else if (starts_with(plat.cmdline, "counter", &arg)) {
    const uint64_t n = parse_u64(arg, 100000);
    result = run_counter(cpu, n, n * plat.ncpus);
  } else if (starts_with(plat.cmdline, "handoff", &arg)) {
    result = run_handoff(cpu, parse_u64(arg, 1000));
  } else if (starts_with(plat.cmdline, "wander", &arg)) {
    result = run_wander(cpu, plat.ncpus, parse_u64(arg, 1000), barrier);
  } else if (starts_with(plat.cmdline, "ipi", &arg)) {
    result = run_ipi(cpu, plat.ncpus, parse_u64(arg, 1000), barrier);
  } else if (starts_with(plat.cmdline, "remote-walk", &arg)) {
    result = run_remote_walk(cpu, plat.ncpus, plat.ram_end, barrier);
  } else if (starts_with(plat.cmdline, "compute", &arg)) {
    result = run_compute(cpu, parse_u64(arg, 10000000));
  } else if (starts_with(plat.cmdline, "blk-read", &arg)) {
    result = run_blk(cpu, plat.ram_end, parse_u64(arg, 64), 0);
  } else if (starts_with(plat.cmdline, "blk-write", &arg)) {
    result = run_blk(cpu, plat.ram_end, parse_u64(arg, 64), 1);
  } else if (starts_with(plat.cmdline, "chan", &arg)) {
    const uint64_t n = parse_u64(arg, 10000);
    while (*arg >= '0' && *arg <= '9') ++arg;
    while (*arg == ' ') ++arg;
    result = run_chan(cpu, n, parse_u64(arg, 64));
  } else if (starts_with(plat.cmdline, "cpuid", &arg)) {
    if (cpu != 0) return;
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    put_str("shoal-guest: cpuid 1 ecx=");
    put_hex(c);
    put_str(" edx=");
    put_hex(d);
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    extern uint32_t cpl0_cpuid1_ecx;
    put_str(" (ring 0: ecx=");
    put_hex(cpl0_cpuid1_ecx);
    put_str(") 7 ebx=");
    put_hex(b);
    put_str(" ecx=");
    put_hex(c);
    put_str("\n");
    result = 0;
  } else if (starts_with(plat.cmdline, "hello", &arg) || plat.cmdline[0] == 0) {
    if (cpu != 0) return;
    put_str("shoal-guest: hello from ");
    put_u64(plat.ncpus);
    put_str(" vCPUs\n");
    result = 0;
  } else {
    if (cpu != 0) return;
    put_str("shoal-guest: unknown workload '");
    put_str(plat.cmdline);
    put_str(
        "' (touch MIB | touch-random MIB | touch-shared MIB | touch-restore MIB | discard MIB | "
        "counter N | counter-total T | handoff R | ipi N | wander R | remote-walk | compute N | "
        "blk-read MIB | blk-write MIB | chan N [BYTES] | hello | cpuid)\n");
    guest_exit(64);
  }
  if (result < 0) return;
  put_str(result == 0 ? "shoal-guest: result ok\n" : "shoal-guest: result FAILED\n");
  guest_exit(result);
}

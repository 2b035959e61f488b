/* Shared by the test guest's C files: port I/O, serial output, the platform it finds. */
#pragma once

#include <stdint.h>

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0x501
#define PAGE_SIZE 4096ull

static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void) {
  __asm__ volatile("pause" ::: "memory");
}

void* memset(void* d, int c, unsigned long n); /* main.c */
void put_char(char c);
void put_str(const char* s);
void put_u64(uint64_t v);
void put_hex(uint64_t v);
_Noreturn void guest_exit(int code);

/* What the guest knows about its machine. */
struct platform {
  const char* cmdline;
  uint32_t ncpus;   /* from the MP table; 1 without one */
  uint64_t ram_end; /* end of the RAM region that contains 1 MiB (from the PVH memmap) */
};
void discover_platform(uint64_t start_info, struct platform* out);

/* Page visited at step i: a multiplicative permutation of [0, pages) (the multiplier is a prime
 * larger than any page count here, so coprime to it). */
static inline uint64_t random_order(uint64_t i, uint64_t pages) {
  return (i * 2654435761ull) % pages;
}

/* guest/ipi.c; `barrier` waits for every vCPU. */
int run_ipi(uint32_t cpu, uint32_t ncpus, uint64_t n, void (*barrier)(int));
/* guest/wander.c */
int run_wander(uint32_t cpu, uint32_t ncpus, uint64_t rounds, void (*barrier)(int));
/* guest/remote_walk.c */
int run_remote_walk(uint32_t cpu, uint32_t ncpus, uint64_t ram_end, void (*barrier)(int));
/* guest/virtio_blk.c: blk-read (write 0) and blk-write (write 1); vCPU 0 only. */
int run_blk(uint32_t cpu, uint64_t ram_end, uint64_t mib, int write);
/* guest/virtio_chan.c: `chan N BYTES`, round trips over virtio-console; vCPU 0 only. */
int run_chan(uint32_t cpu, uint64_t n, uint64_t bytes);

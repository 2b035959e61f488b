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

/* guest/ipi.c; `barrier` waits for every vCPU. */
int run_ipi(uint32_t cpu, uint32_t ncpus, uint64_t n, void (*barrier)(int));
/* guest/wander.c */
int run_wander(uint32_t cpu, uint32_t ncpus, uint64_t rounds, void (*barrier)(int));

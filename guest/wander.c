/*
 * The `wander R` workload, for the placement policy (docs/placement.md): vCPUs work in pairs,
 * k with k + ncpus/2, so with the vCPUs given to hosts in order the two of a pair start on
 * different hosts. A pair shares a data set of WANDER_PAGES pages and a token; R times, the
 * token's holder checks the whole set (what its partner wrote), rewrites it and passes the
 * token back. With static placement every pass moves the set between the hosts; with
 * `placement: auto` one vCPU of each pair should move to its partner's host and the passes
 * become local. vCPU 0 prints the most cycles any vCPU's rounds took and the bad words seen.
 */
#include "guest.h"

#define WANDER_PAGES 16
#define WANDER_MAX_PAIRS 64

static uint64_t wander_data[WANDER_MAX_PAIRS][WANDER_PAGES][512] __attribute__((aligned(4096)));
static uint64_t wander_token[WANDER_MAX_PAIRS][512] __attribute__((aligned(4096)));
static uint64_t wander_cycles[2 * WANDER_MAX_PAIRS] __attribute__((aligned(64)));
static uint64_t wander_bad[2 * WANDER_MAX_PAIRS] __attribute__((aligned(64)));

static uint64_t stamp(uint64_t pass, uint64_t word) {
  return (pass + 1) * 0x9E3779B97F4A7C15ull ^ word;
}

int run_wander(uint32_t cpu, uint32_t ncpus, uint64_t rounds, void (*barrier)(int)) {
  if (ncpus < 2 || ncpus % 2 || ncpus > 2 * WANDER_MAX_PAIRS) {
    if (cpu != 0) return -1;
    put_str("shoal-guest: wander needs an even number of vCPUs, 2 to 128\n");
    return 1;
  }
  const uint32_t half = ncpus / 2, pair = cpu % half, role = cpu / half;
  uint64_t(*data)[512] = wander_data[pair];
  uint64_t* token = &wander_token[pair][0];
  uint64_t bad = 0;
  barrier(1);
  const uint64_t start = rdtsc();
  for (uint64_t pass = role; pass < 2 * rounds; pass += 2) {
    while (__atomic_load_n(token, __ATOMIC_ACQUIRE) != pass) cpu_relax();
    for (uint64_t p = 0; p < WANDER_PAGES; ++p)
      for (uint64_t w = 0; w < 512; ++w) {
        if (pass > 0) bad += data[p][w] != stamp(pass - 1, p * 512 + w);
        data[p][w] = stamp(pass, p * 512 + w);
      }
    __atomic_store_n(token, pass + 1, __ATOMIC_RELEASE);
  }
  wander_cycles[cpu] = rdtsc() - start;
  wander_bad[cpu] = bad;
  barrier(2);
  if (cpu != 0) return -1;
  uint64_t most = 0, all_bad = 0;
  for (uint32_t c = 0; c < ncpus; ++c) {
    const uint64_t cycles = __atomic_load_n(&wander_cycles[c], __ATOMIC_ACQUIRE);
    most = cycles > most ? cycles : most;
    all_bad += __atomic_load_n(&wander_bad[c], __ATOMIC_ACQUIRE);
  }
  put_str("shoal-guest: wander vcpus=");
  put_u64(ncpus);
  put_str(" rounds=");
  put_u64(rounds);
  put_str(" cycles=");
  put_u64(most);
  put_str(" bad=");
  put_u64(all_bad);
  put_str("\n");
  return all_bad == 0 ? 0 : 1;
}

/*
 * The `ipi N` workload: each vCPU sends N IPIs round-robin to the others (in a pod, across
 * hosts) and counts what it receives; vCPU 0 prints "ipi sent=S received=R lost=L".
 *
 * A sender uses its own vector (IPI_VECTOR0 + its index) and has at most one IPI outstanding per
 * target: it sends the next one to a target only once that target's handler has counted the
 * previous one. Two IPIs of one vector pending at once would merge in the target's IRR, as on
 * hardware, and the count could not tell that from a loss. An IPI not counted within
 * ACK_CYCLES is lost.
 *
 * IPIs are sent at CPL3 through the xAPIC's MMIO page (identity-mapped, user-accessible) and
 * taken at CPL0 by entry.S's ipi_common, which counts them in ipi_received[target][sender].
 */
#include "guest.h"

#define IPI_VECTOR0 0x40
#define IPI_MAX_CPUS 0xb0
#define LAPIC_BASE 0xfee00000ull
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define ICR_ASSERT (1u << 14)
#define ACK_CYCLES 30000000000ull /* 10 s at 3 GHz; much longer than any pod round trip */

/* One 4 KiB row per receiving vCPU (entry.S indexes it): each row is written by its vCPU only. */
uint64_t ipi_received[256][512] __attribute__((aligned(4096)));
static uint64_t ipi_sent[256] __attribute__((aligned(64)));
static uint64_t ipi_lost[256] __attribute__((aligned(64)));

void cpl3_enable_interrupts(void); /* entry.S */

static void lapic_write(uint32_t reg, uint32_t v) {
  *(volatile uint32_t*)(LAPIC_BASE + reg) = v;
}

/* Waits until `target` has counted `want` IPIs from `sender`; returns what it counted. */
static uint64_t wait_counted(uint32_t target, uint32_t sender, uint64_t want) {
  const uint64_t deadline = rdtsc() + ACK_CYCLES;
  uint64_t got;
  while ((got = __atomic_load_n(&ipi_received[target][sender], __ATOMIC_ACQUIRE)) < want &&
         rdtsc() < deadline)
    cpu_relax();
  return got;
}

int run_ipi(uint32_t cpu, uint32_t ncpus, uint64_t n, void (*barrier)(int)) {
  if (ncpus < 2 || ncpus > IPI_MAX_CPUS) {
    if (cpu != 0) return -1;
    put_str("shoal-guest: ipi needs 2 to 176 vCPUs\n");
    return 1;
  }
  cpl3_enable_interrupts();
  __asm__ volatile("" ::: "memory");
  lapic_write(LAPIC_SVR, 0x1ff); /* software-enabled, spurious vector 0xff */
  barrier(1);                    /* nobody sends to a LAPIC still disabled */

  uint64_t sent_to[IPI_MAX_CPUS] = {0};
  uint64_t lost = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t t = (uint32_t)((cpu + 1 + i % (ncpus - 1)) % ncpus);
    const uint64_t got = wait_counted(t, cpu, sent_to[t]);
    if (got < sent_to[t]) {
      lost += sent_to[t] - got;
      sent_to[t] = got;
    }
    ++sent_to[t];
    lapic_write(LAPIC_ICR_HIGH, t << 24);
    lapic_write(LAPIC_ICR_LOW, ICR_ASSERT | (IPI_VECTOR0 + cpu)); /* fixed, physical */
  }
  for (uint32_t t = 0; t < ncpus; ++t) {
    const uint64_t got = wait_counted(t, cpu, sent_to[t]);
    if (got < sent_to[t]) lost += sent_to[t] - got;
  }
  ipi_sent[cpu] = n;
  ipi_lost[cpu] = lost;
  barrier(2);
  if (cpu != 0) return -1;
  uint64_t sent = 0, received = 0, all_lost = 0;
  for (uint32_t c = 0; c < ncpus; ++c) {
    sent += __atomic_load_n(&ipi_sent[c], __ATOMIC_ACQUIRE);
    all_lost += __atomic_load_n(&ipi_lost[c], __ATOMIC_ACQUIRE);
    for (uint32_t s = 0; s < ncpus; ++s)
      received += __atomic_load_n(&ipi_received[c][s], __ATOMIC_ACQUIRE);
  }
  put_str("shoal-guest: ipi vcpus=");
  put_u64(ncpus);
  put_str(" sent=");
  put_u64(sent);
  put_str(" received=");
  put_u64(received);
  put_str(" lost=");
  put_u64(all_lost);
  put_str("\n");
  return all_lost == 0 && received == sent ? 0 : 1;
}

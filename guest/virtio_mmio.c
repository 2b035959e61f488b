/* The virtio-mmio transport and split virtqueues for the test guest's drivers (virtio_mmio.h),
 * and the TSC calibration they time their results with. */
#include "virtio_mmio.h"

void put_kv(const char* key, uint64_t v) {
  put_str(key);
  put_u64(v);
}

static void set_status(struct virtio_dev* d, uint32_t bits) {
  d->status |= bits;
  mmio_write(d, REG_STATUS, d->status);
}

static void fail_prefix(struct virtio_dev* d) {
  put_str("shoal-guest: ");
  put_str(d->name);
  put_str(": ");
}

int virtio_fail(struct virtio_dev* d, const char* what) {
  fail_prefix(d);
  put_str(what);
  put_str("\n");
  set_status(d, STATUS_FAILED);
  return 1;
}

/* "shoal-guest: NAME: queue N WHAT" */
static int queue_fail(struct virtio_dev* d, const struct virtq* q, const char* what) {
  fail_prefix(d);
  put_kv("queue ", q->index);
  put_str(what);
  put_str("\n");
  set_status(d, STATUS_FAILED);
  return 1;
}

int virtio_needs_reset(struct virtio_dev* d) {
  if (!(mmio_read(d, REG_STATUS) & STATUS_NEEDS_RESET)) return 0;
  virtio_fail(d, "device needs reset (DEVICE_NEEDS_RESET)");
  return 1;
}

uint64_t virtio_find(uint32_t device_id, const char* name) {
  uint64_t legacy = 0;
  for (uint64_t n = 0; n < MMIO_SLOTS; ++n) {
    const struct virtio_dev t = {.base = MMIO_BASE + n * MMIO_STRIDE};
    if (mmio_read(&t, REG_MAGIC) != VIRTIO_MAGIC) continue;
    if (mmio_read(&t, REG_DEVICE_ID) != device_id) continue; /* 0: an empty slot */
    const uint32_t version = mmio_read(&t, REG_VERSION);
    if (version == 2) return t.base;
    if (version == 1 && legacy == 0) legacy = t.base;
  }
  if (legacy != 0) {
    put_str("shoal-guest: legacy virtio-mmio (version 1) at ");
    put_hex(legacy);
    put_str("; QEMU needs -global virtio-mmio.force-legacy=false\n");
  } else {
    put_str("shoal-guest: no ");
    put_str(name);
    put_str(" device\n");
  }
  return 0;
}

int virtio_init(struct virtio_dev* d, uint64_t wanted) {
  mmio_write(d, REG_STATUS, 0);
  for (uint32_t i = 0; mmio_read(d, REG_STATUS) != 0; ++i) {
    if (i > 1000000) return virtio_fail(d, "reset does not complete");
    cpu_relax();
  }
  d->status = 0;
  set_status(d, STATUS_ACKNOWLEDGE);
  set_status(d, STATUS_DRIVER);
  mmio_write(d, REG_DEVICE_FEATURES_SEL, 0);
  uint64_t offered = mmio_read(d, REG_DEVICE_FEATURES);
  mmio_write(d, REG_DEVICE_FEATURES_SEL, 1);
  offered |= (uint64_t)mmio_read(d, REG_DEVICE_FEATURES) << 32;
  if (!(offered & F_VERSION_1)) return virtio_fail(d, "device does not offer VIRTIO_F_VERSION_1");
  d->features = offered & (wanted | F_VERSION_1);
  mmio_write(d, REG_DRIVER_FEATURES_SEL, 0);
  mmio_write(d, REG_DRIVER_FEATURES, (uint32_t)d->features);
  mmio_write(d, REG_DRIVER_FEATURES_SEL, 1);
  mmio_write(d, REG_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
  set_status(d, STATUS_FEATURES_OK);
  if (!(mmio_read(d, REG_STATUS) & STATUS_FEATURES_OK))
    return virtio_fail(d, "device did not accept the features (FEATURES_OK clear)");
  return 0;
}

int virtq_setup(struct virtio_dev* d, struct virtq* q, uint32_t min_num) {
  mmio_write(d, REG_QUEUE_SEL, q->index);
  if (mmio_read(d, REG_QUEUE_READY) != 0) return queue_fail(d, q, " is ready before set-up");
  const uint32_t max = mmio_read(d, REG_QUEUE_NUM_MAX);
  if (max == 0) return queue_fail(d, q, " is not available (QueueNumMax 0)");
  /* A power of two, so that the free-running 16-bit indices wrap with the ring. */
  uint32_t num = QUEUE_MAX;
  while (num > max) num >>= 1;
  if (num < min_num) return queue_fail(d, q, " is too small for one request");
  q->num = (uint16_t)num;
  memset(q->desc, 0, QUEUE_MAX * sizeof *q->desc);
  memset(q->avail, 0, sizeof *q->avail);
  memset(q->used, 0, sizeof *q->used);
  q->avail->flags = AVAIL_F_NO_INTERRUPT;
  q->avail_idx = q->used_idx = 0;
  mmio_write(d, REG_QUEUE_NUM, num);
  mmio_write64(d, REG_QUEUE_DESC, (uint64_t)q->desc);
  mmio_write64(d, REG_QUEUE_DRIVER, (uint64_t)q->avail);
  mmio_write64(d, REG_QUEUE_DEVICE, (uint64_t)q->used);
  mmio_write(d, REG_QUEUE_READY, 1);
  return 0;
}

int virtio_driver_ok(struct virtio_dev* d) {
  set_status(d, STATUS_DRIVER_OK);
  return virtio_needs_reset(d);
}

void virtq_publish(struct virtio_dev* d, struct virtq* q) {
  __atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
  /* The idx store must be visible before used->flags is read, or the device could go idle
   * between our check and its next look at the ring. */
  __asm__ volatile("mfence" ::: "memory");
  if (!(__atomic_load_n(&q->used->flags, __ATOMIC_RELAXED) & USED_F_NO_NOTIFY)) {
    mmio_write(d, REG_QUEUE_NOTIFY, q->index);
    ++d->notifies;
  }
}

int virtq_wait_used(struct virtio_dev* d, struct virtq* q) {
  for (uint64_t spins = 1;; ++spins) {
    const uint16_t idx = virtq_used_idx(q);
    if (idx != q->used_idx) return idx;
    if ((spins & 0xfffff) == 0 && virtio_needs_reset(d)) return -1;
    cpu_relax();
  }
}

/* Whether PIT channel 2 has counted down to zero: OUT2 in port 0x61, or where nothing answers
 * there (QEMU's microvm: it reads 0xff, which KVM's speaker port never does) the count, latched
 * so that both bytes are of one moment. Mode 0 goes on counting past zero: 0 or a wrap ends. */
static int pit2_done(int have_port61, uint16_t* last) {
  if (have_port61) return (inb(0x61) & 0x20) != 0;
  outb(0x43, 0x80);
  const uint8_t lo = inb(0x42);
  const uint16_t count = (uint16_t)(lo | inb(0x42) << 8);
  const int done = count == 0 || count > *last;
  *last = count;
  return done;
}

/* TSC cycles while channel 2 counts `latch` ticks in mode 0 (as Linux's pit_calibrate_tsc), 0
 * if it does not count; *err: how far off the ends may be (a long poll: an exit, preemption). */
static uint64_t pit_cycles(uint64_t latch, int have_port61, uint64_t* err) {
  outb(0x43, 0xb0); /* channel 2, lobyte/hibyte, mode 0 */
  outb(0x42, (uint8_t)latch);
  const uint64_t start0 = rdtsc();
  outb(0x42, (uint8_t)(latch >> 8)); /* counting starts */
  const uint64_t start1 = rdtsc();
  uint64_t before = start1, end;
  uint16_t last = (uint16_t)latch;
  for (uint64_t polls = 0;; ++polls) {
    const uint64_t t = rdtsc();
    if (pit2_done(have_port61, &last)) {
      end = rdtsc();
      if (polls == 0) return 0; /* done at the first look: no PIT */
      break;
    }
    if (polls > 100000000) return 0;
    before = t; /* zero came after this */
  }
  *err = (end - before + start1 - start0) / 2;
  return (end + before) / 2 - (start0 + start1) / 2;
}

/* The best of up to five ~20 ms measurements (stopping at one within 0.1%). */
uint64_t calibrate_tsc_khz(void) {
  const uint64_t pit_hz = 1193182, latch = pit_hz / 50;
  const uint8_t port61 = inb(0x61);
  outb(0x61, (uint8_t)((port61 & ~0x02) | 0x01)); /* gate on, speaker off */
  uint64_t best = 0, best_err = ~0ull;
  for (int i = 0; i < 5 && best_err > best / 1000; ++i) {
    uint64_t err;
    const uint64_t cycles = pit_cycles(latch, port61 != 0xff, &err);
    if (cycles == 0) return 0;
    if (err < best_err) {
      best = cycles;
      best_err = err;
    }
  }
  return best * pit_hz / (latch * 1000);
}

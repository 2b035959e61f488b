/*
 * `blk-read MIB` and `blk-write MIB`: a polling virtio-blk driver (virtio 1.x, virtio-mmio
 * version 2, one split virtqueue) run by vCPU 0 at CPL3. No interrupts: the avail ring asks
 * for none and the driver polls the used ring. Up to BLK_QD requests are in flight, each with
 * its own tag: three descriptors (header, data, status), a header, a status byte and a data
 * slot of SEQ_BYTES at DATA_BASE. See main.c for what the workloads do and print.
 */
#include "guest.h"

#define MMIO_BASE 0xfeb00000ull
#define MMIO_STRIDE 0x200
#define MMIO_SLOTS 32

#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_STATUS 0x070
#define REG_QUEUE_DESC 0x080 /* low, high at +4 */
#define REG_QUEUE_DRIVER 0x090
#define REG_QUEUE_DEVICE 0x0a0
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100

#define VIRTIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_ID_BLOCK 2
#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_NEEDS_RESET 0x40
#define STATUS_FAILED 0x80

#define F_BLK_RO (1ull << 5)
#define F_BLK_SIZE (1ull << 6)
#define F_BLK_FLUSH (1ull << 9)
#define F_VERSION_1 (1ull << 32)
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4

#define QUEUE_MAX 256
#define BLK_QD 32
#define SEQ_BYTES (128u << 10)
#define BLOCK_BYTES 4096u
#define DATA_BASE (32ull << 20)
#define DATA_END (DATA_BASE + (uint64_t)BLK_QD * SEQ_BYTES)

struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags, next;
};
struct virtq_avail {
  uint16_t flags, idx, ring[QUEUE_MAX], used_event;
};
struct virtq_used_elem {
  uint32_t id, len;
};
struct virtq_used {
  uint16_t flags, idx;
  struct virtq_used_elem ring[QUEUE_MAX];
  uint16_t avail_event;
};
struct blk_req_hdr {
  uint32_t type, reserved;
  uint64_t sector;
};

/* What the driver writes (descriptors; avail ring and headers) and what the device writes
 * (used ring and status bytes, which the driver only presets) lie in different pages: in a
 * pod, a page written from both sides moves between hosts at every store. */
static struct {
  struct virtq_desc desc[QUEUE_MAX];
  struct virtq_avail avail __attribute__((aligned(4096)));
  struct blk_req_hdr hdr[BLK_QD];
  struct virtq_used used __attribute__((aligned(4096)));
  uint8_t status[BLK_QD];
} vq __attribute__((aligned(4096)));

struct blk {
  uint64_t base, features, sectors;
  uint32_t status; /* what the driver last wrote to Status */
  uint32_t qd;
  uint16_t num, avail_idx, used_idx;
  uint64_t requests, notifies, errors;
};

enum op { OP_READ, OP_READ_SUM, OP_READ_VERIFY, OP_WRITE, OP_FLUSH };

/* One pass of `count` requests of `bytes` each, at i * bytes or (with `blocks`, 4 KiB ones) at
 * 4 KiB block random_order(i, blocks). */
struct phase {
  enum op op;
  uint64_t count, blocks;
  uint32_t bytes;
  uint64_t sum; /* OP_READ_SUM: sum of word * (word index + 1) */
  uint64_t bad; /* OP_READ_VERIFY: words that differ from blk_pattern */
};

static inline uint32_t mmio_read(const struct blk* d, uint32_t reg) {
  return *(volatile uint32_t*)(d->base + reg);
}
static inline void mmio_write(const struct blk* d, uint32_t reg, uint32_t v) {
  *(volatile uint32_t*)(d->base + reg) = v;
}
static inline void mmio_write64(const struct blk* d, uint32_t reg, uint64_t v) {
  mmio_write(d, reg, (uint32_t)v);
  mmio_write(d, reg + 4, (uint32_t)(v >> 32));
}

/* " key=value", as the result lines have them (or any text and a number) */
static void put_kv(const char* key, uint64_t v) {
  put_str(key);
  put_u64(v);
}

static void set_status(struct blk* d, uint32_t bits) {
  d->status |= bits;
  mmio_write(d, REG_STATUS, d->status);
}

/* Tells the device the driver gave up (spec 3.1.1), and the user why. */
static int blk_fail(struct blk* d, const char* what) {
  put_str("shoal-guest: virtio-blk: ");
  put_str(what);
  put_str("\n");
  set_status(d, STATUS_FAILED);
  return 1;
}

static int needs_reset(struct blk* d) {
  if (!(mmio_read(d, REG_STATUS) & STATUS_NEEDS_RESET)) return 0;
  blk_fail(d, "device needs reset (DEVICE_NEEDS_RESET)");
  return 1;
}

/* The first modern block device among the transports; 0 with a message if there is none. */
static uint64_t find_blk(void) {
  uint64_t legacy = 0;
  for (uint64_t n = 0; n < MMIO_SLOTS; ++n) {
    const struct blk t = {.base = MMIO_BASE + n * MMIO_STRIDE};
    if (mmio_read(&t, REG_MAGIC) != VIRTIO_MAGIC) continue;
    if (mmio_read(&t, REG_DEVICE_ID) != VIRTIO_ID_BLOCK) continue; /* 0: an empty slot */
    const uint32_t version = mmio_read(&t, REG_VERSION);
    if (version == 2) return t.base;
    if (version == 1 && legacy == 0) legacy = t.base;
  }
  if (legacy != 0) {
    put_str("shoal-guest: legacy virtio-mmio (version 1) at ");
    put_hex(legacy);
    put_str("; QEMU needs -global virtio-mmio.force-legacy=false\n");
  } else {
    put_str("shoal-guest: no virtio-blk device\n");
  }
  return 0;
}

/* Device initialisation, spec 3.1.1, with queue 0 set up as a split virtqueue. */
static int blk_init(struct blk* d) {
  mmio_write(d, REG_STATUS, 0);
  for (uint32_t i = 0; mmio_read(d, REG_STATUS) != 0; ++i) {
    if (i > 1000000) return blk_fail(d, "reset does not complete");
    cpu_relax();
  }
  set_status(d, STATUS_ACKNOWLEDGE);
  set_status(d, STATUS_DRIVER);
  mmio_write(d, REG_DEVICE_FEATURES_SEL, 0);
  uint64_t offered = mmio_read(d, REG_DEVICE_FEATURES);
  mmio_write(d, REG_DEVICE_FEATURES_SEL, 1);
  offered |= (uint64_t)mmio_read(d, REG_DEVICE_FEATURES) << 32;
  if (!(offered & F_VERSION_1)) return blk_fail(d, "device does not offer VIRTIO_F_VERSION_1");
  d->features = offered & (F_VERSION_1 | F_BLK_FLUSH | F_BLK_RO | F_BLK_SIZE);
  mmio_write(d, REG_DRIVER_FEATURES_SEL, 0);
  mmio_write(d, REG_DRIVER_FEATURES, (uint32_t)d->features);
  mmio_write(d, REG_DRIVER_FEATURES_SEL, 1);
  mmio_write(d, REG_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
  set_status(d, STATUS_FEATURES_OK);
  if (!(mmio_read(d, REG_STATUS) & STATUS_FEATURES_OK))
    return blk_fail(d, "device did not accept the features (FEATURES_OK clear)");

  mmio_write(d, REG_QUEUE_SEL, 0);
  if (mmio_read(d, REG_QUEUE_READY) != 0) return blk_fail(d, "queue 0 is ready before set-up");
  const uint32_t max = mmio_read(d, REG_QUEUE_NUM_MAX);
  if (max == 0) return blk_fail(d, "queue 0 is not available (QueueNumMax 0)");
  /* A power of two, so that the free-running 16-bit indices wrap with the ring. */
  uint32_t num = QUEUE_MAX;
  while (num > max) num >>= 1;
  if (num < 3) return blk_fail(d, "queue 0 is too small for one request");
  d->num = (uint16_t)num;
  d->qd = num / 3 < BLK_QD ? num / 3 : BLK_QD;
  memset(&vq, 0, sizeof vq);
  vq.avail.flags = AVAIL_F_NO_INTERRUPT;
  d->avail_idx = d->used_idx = 0;
  mmio_write(d, REG_QUEUE_NUM, num);
  mmio_write64(d, REG_QUEUE_DESC, (uint64_t)vq.desc);
  mmio_write64(d, REG_QUEUE_DRIVER, (uint64_t)&vq.avail);
  mmio_write64(d, REG_QUEUE_DEVICE, (uint64_t)&vq.used);
  mmio_write(d, REG_QUEUE_READY, 1);
  set_status(d, STATUS_DRIVER_OK);
  if (needs_reset(d)) return 1;

  /* capacity (u64 at +0) and blk_size (u32 at +20), read until the generation holds still */
  uint32_t gen, blk_size;
  do {
    gen = mmio_read(d, REG_CONFIG_GENERATION);
    d->sectors = mmio_read(d, REG_CONFIG) | (uint64_t)mmio_read(d, REG_CONFIG + 4) << 32;
    blk_size = mmio_read(d, REG_CONFIG + 20);
  } while (gen != mmio_read(d, REG_CONFIG_GENERATION));
  /* The 4 KiB requests must be whole logical blocks. */
  if ((d->features & F_BLK_SIZE) && (blk_size == 0 || BLOCK_BYTES % blk_size != 0))
    return blk_fail(d, "logical block size does not divide 4 KiB");
  put_str("shoal-guest: virtio-blk at ");
  put_hex(d->base);
  put_kv(" sectors=", d->sectors);
  put_kv(" queue=", num);
  put_str(" features=");
  put_hex(d->features);
  put_str("\n");
  return 0;
}

/* Word w of 4 KiB block b as blk-write writes it: no two words of the disk alike. */
static inline uint64_t blk_pattern(uint64_t b, uint64_t w) {
  return (((b << 9) | w) + 1) * 0x9E3779B97F4A7C15ull;
}

static inline uint64_t* slot(uint32_t tag) {
  return (uint64_t*)(DATA_BASE + (uint64_t)tag * SEQ_BYTES);
}

static uint64_t request_offset(const struct phase* p, uint64_t i) {
  return p->blocks != 0 ? random_order(i, p->blocks) * BLOCK_BYTES : i * p->bytes;
}

/* Puts request `tag` (its descriptors are 3 * tag and the two after it) in the avail ring;
 * the device sees it once publish() moves avail->idx. */
static void submit(struct blk* d, uint32_t tag, uint32_t type, uint64_t offset, uint32_t bytes) {
  const uint16_t head = (uint16_t)(3 * tag);
  struct virtq_desc* desc = &vq.desc[head];
  vq.hdr[tag].type = type;
  vq.hdr[tag].reserved = 0;
  vq.hdr[tag].sector = offset / 512;
  vq.status[tag] = 0xff; /* a device that completes without writing it is caught */
  desc[0].addr = (uint64_t)&vq.hdr[tag];
  desc[0].len = sizeof vq.hdr[tag];
  desc[0].flags = DESC_F_NEXT;
  desc[0].next = (uint16_t)(head + (type == BLK_T_FLUSH ? 2 : 1));
  desc[1].addr = (uint64_t)slot(tag);
  desc[1].len = bytes;
  desc[1].flags = DESC_F_NEXT | (type == BLK_T_IN ? DESC_F_WRITE : 0);
  desc[1].next = (uint16_t)(head + 2);
  desc[2].addr = (uint64_t)&vq.status[tag];
  desc[2].len = 1;
  desc[2].flags = DESC_F_WRITE;
  desc[2].next = 0;
  vq.avail.ring[d->avail_idx & (d->num - 1)] = head;
  ++d->avail_idx;
  ++d->requests;
}

static void publish(struct blk* d) {
  __atomic_store_n(&vq.avail.idx, d->avail_idx, __ATOMIC_RELEASE);
  /* The idx store must be visible before used->flags is read, or the device could go idle
   * between our check and its next look at the ring. */
  __asm__ volatile("mfence" ::: "memory");
  if (!(__atomic_load_n(&vq.used.flags, __ATOMIC_RELAXED) & USED_F_NO_NOTIFY)) {
    mmio_write(d, REG_QUEUE_NOTIFY, 0);
    ++d->notifies;
  }
}

/* Spins until used->idx moves; -1 if the device wants a reset. Status is an MMIO read (a VM
 * exit), so it is looked at only now and then. */
static int wait_used(struct blk* d) {
  for (uint64_t spins = 1;; ++spins) {
    const uint16_t idx = __atomic_load_n(&vq.used.idx, __ATOMIC_ACQUIRE);
    if (idx != d->used_idx) return idx;
    if ((spins & 0xfffff) == 0 && needs_reset(d)) return -1;
    cpu_relax();
  }
}

static void fill(uint32_t tag, uint64_t offset, uint32_t bytes) {
  uint64_t* data = slot(tag);
  const uint64_t block0 = offset / BLOCK_BYTES;
  for (uint64_t b = 0; b < bytes / BLOCK_BYTES; ++b)
    for (uint64_t w = 0; w < 512; ++w) data[b * 512 + w] = blk_pattern(block0 + b, w);
}

static void check(struct phase* p, uint32_t tag, uint64_t offset, uint32_t bytes) {
  const uint64_t* data = slot(tag);
  const uint64_t words = bytes / 8, first = offset / 8;
  if (p->op == OP_READ_SUM) {
    for (uint64_t w = 0; w < words; ++w) p->sum += data[w] * (first + w + 1);
  } else if (p->op == OP_READ_VERIFY) {
    for (uint64_t w = 0; w < words; ++w) {
      const uint64_t word = first + w;
      p->bad += data[w] != blk_pattern(word / 512, word % 512);
    }
  }
}

/* Runs a phase with up to d->qd requests in flight: each round submits into every free tag,
 * publishes them at once, then waits for completions, which may come in any order. */
static int run_phase(struct blk* d, struct phase* p) {
  static const uint32_t types[] = {BLK_T_IN, BLK_T_IN, BLK_T_IN, BLK_T_OUT, BLK_T_FLUSH};
  uint32_t free_tags[BLK_QD], nfree = 0;
  uint64_t offsets[BLK_QD];
  uint8_t in_flight[BLK_QD];
  for (uint32_t t = d->qd; t-- > 0;) {
    free_tags[nfree++] = t;
    in_flight[t] = 0;
  }
  uint64_t next = 0, done = 0;
  while (done < p->count) {
    const uint16_t before = d->avail_idx;
    while (nfree > 0 && next < p->count) {
      const uint32_t tag = free_tags[--nfree];
      offsets[tag] = request_offset(p, next++);
      if (p->op == OP_WRITE) fill(tag, offsets[tag], p->bytes);
      in_flight[tag] = 1;
      submit(d, tag, types[p->op], offsets[tag], p->bytes);
    }
    if (d->avail_idx != before) publish(d);
    const int idx = wait_used(d);
    if (idx < 0) return 1;
    for (; d->used_idx != (uint16_t)idx; ++d->used_idx, ++done) {
      const uint32_t id = vq.used.ring[d->used_idx & (d->num - 1)].id;
      const uint32_t tag = id / 3;
      if (id % 3 != 0 || tag >= d->qd || !in_flight[tag]) {
        put_str("shoal-guest: virtio-blk: used ring returned descriptor ");
        put_u64(id);
        put_str(", which is not the head of a request in flight\n");
        return 1;
      }
      in_flight[tag] = 0;
      free_tags[nfree++] = tag;
      if (vq.status[tag] != 0) {
        ++d->errors;
        continue;
      }
      check(p, tag, offsets[tag], p->bytes);
    }
  }
  return 0;
}

static int flush(struct blk* d) {
  if (!(d->features & F_BLK_FLUSH)) return 0;
  struct phase p = {.op = OP_FLUSH, .count = 1};
  return run_phase(d, &p);
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

/* TSC kHz from the best of up to five ~20 ms measurements (stopping at one within 0.1%); 0 if
 * the PIT does not count. */
static uint64_t calibrate_tsc_khz(void) {
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

static uint64_t per_second(uint64_t n, uint64_t cycles, uint64_t khz) {
  return cycles == 0 ? 0 : n * khz * 1000 / cycles;
}

/* MB/s (10^6 bytes/s), in an order that stays within 64 bits up to terabytes. */
static uint64_t mb_per_second(uint64_t bytes, uint64_t cycles, uint64_t khz) {
  return cycles == 0 ? 0 : bytes * khz / cycles / 1000;
}

int run_blk(uint32_t cpu, uint64_t ram_end, uint64_t mib, int write) {
  if (cpu != 0) return -1;
  const char* name = write ? "blk-write" : "blk-read";
  if (DATA_END > ram_end) {
    put_str("shoal-guest: the blk data buffers do not fit: they end at ");
    put_hex(DATA_END);
    put_str(", RAM at ");
    put_hex(ram_end);
    put_str("\n");
    return 1;
  }
  struct blk d = {.base = find_blk()};
  if (d.base == 0 || blk_init(&d) != 0) return 1;
  if (d.sectors < mib << 11) {
    put_kv("shoal-guest: disk has ", d.sectors >> 11);
    put_str(" MiB, ");
    put_str(name);
    put_kv(" needs ", mib);
    put_str(" MiB\n");
    return 1;
  }
  if (write && (d.features & F_BLK_RO)) {
    put_str("shoal-guest: disk is read-only\n");
    return 1;
  }
  const uint64_t khz = calibrate_tsc_khz();
  if (khz == 0) {
    put_str("shoal-guest: TSC calibration failed: PIT channel 2 does not count\n");
    return 1;
  }
  const uint64_t blocks = mib << 8;
  /* Sequential in 128 KiB requests, then 4 KiB requests in a fixed pseudo-random order; the
   * cycles cover the requests (with blk-write's filling and blk-read's summing), not the
   * flushes. */
  struct phase seq = {
      .op = write ? OP_WRITE : OP_READ_SUM, .count = (mib << 20) / SEQ_BYTES, .bytes = SEQ_BYTES};
  struct phase rnd = {
      .op = write ? OP_WRITE : OP_READ, .count = blocks, .blocks = blocks, .bytes = BLOCK_BYTES};
  uint64_t t0 = rdtsc();
  if (run_phase(&d, &seq) != 0) return 1;
  const uint64_t seq_cycles = rdtsc() - t0;
  if (write && flush(&d) != 0) return 1;
  t0 = rdtsc();
  if (run_phase(&d, &rnd) != 0) return 1;
  const uint64_t rand_cycles = rdtsc() - t0;
  struct phase verify = {.op = OP_READ_VERIFY, .count = seq.count, .bytes = SEQ_BYTES};
  if (write && (flush(&d) != 0 || run_phase(&d, &verify) != 0)) return 1;

  put_str("shoal-guest: ");
  put_str(name);
  put_kv(" mib=", mib);
  put_kv(" seq_mbps=", mb_per_second(mib << 20, seq_cycles, khz));
  put_kv(" rand4k_iops=", per_second(blocks, rand_cycles, khz));
  put_kv(" seq_cycles=", seq_cycles);
  put_kv(" rand4k_cycles=", rand_cycles);
  put_kv(" requests=", d.requests);
  put_kv(" notifies=", d.notifies);
  put_kv(" tsc_khz=", khz);
  if (write) {
    put_kv(" bad=", verify.bad);
  } else {
    put_str(" checksum=");
    put_hex(seq.sum);
  }
  put_kv(" errors=", d.errors);
  put_str("\n");
  return d.errors == 0 && verify.bad == 0 ? 0 : 1;
}

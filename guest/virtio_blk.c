/*
 * `blk-read MIB` and `blk-write MIB`: a polling virtio-blk driver (virtio 1.x, virtio-mmio
 * version 2, one split virtqueue) run by vCPU 0 at CPL3. No interrupts: the avail ring asks
 * for none and the driver polls the used ring. Up to BLK_QD requests are in flight, each with
 * its own tag: three descriptors (header, data, status), a header, a status byte and a data
 * slot of SEQ_BYTES at DATA_BASE. See main.c for what the workloads do and print.
 */
#include "virtio_mmio.h"

#define VIRTIO_ID_BLOCK 2
#define F_BLK_RO (1ull << 5)
#define F_BLK_SIZE (1ull << 6)
#define F_BLK_FLUSH (1ull << 9)
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4

#define BLK_QD 32
#define SEQ_BYTES (128u << 10)
#define BLOCK_BYTES 4096u
#define DATA_BASE (32ull << 20)
#define DATA_END (DATA_BASE + (uint64_t)BLK_QD * SEQ_BYTES)

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
  struct virtio_dev dev;
  struct virtq q;
  uint64_t sectors;
  uint32_t qd;
  uint64_t requests, errors;
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

/* Device initialisation, spec 3.1.1, with queue 0 set up as a split virtqueue. */
static int blk_init(struct blk* d) {
  struct virtio_dev* dev = &d->dev;
  if (virtio_init(dev, F_BLK_FLUSH | F_BLK_RO | F_BLK_SIZE) != 0) return 1;
  d->q = (struct virtq){.desc = vq.desc, .avail = &vq.avail, .used = &vq.used, .index = 0};
  if (virtq_setup(dev, &d->q, 3) != 0) return 1; /* 3: one request's descriptors */
  const uint32_t num = d->q.num;
  d->qd = num / 3 < BLK_QD ? num / 3 : BLK_QD;
  if (virtio_driver_ok(dev)) return 1;

  /* capacity (u64 at +0) and blk_size (u32 at +20), read until the generation holds still */
  uint32_t gen, blk_size;
  do {
    gen = mmio_read(dev, REG_CONFIG_GENERATION);
    d->sectors = mmio_read(dev, REG_CONFIG) | (uint64_t)mmio_read(dev, REG_CONFIG + 4) << 32;
    blk_size = mmio_read(dev, REG_CONFIG + 20);
  } while (gen != mmio_read(dev, REG_CONFIG_GENERATION));
  /* The 4 KiB requests must be whole logical blocks. */
  if ((dev->features & F_BLK_SIZE) && (blk_size == 0 || BLOCK_BYTES % blk_size != 0))
    return virtio_fail(dev, "logical block size does not divide 4 KiB");
  put_str("shoal-guest: virtio-blk at ");
  put_hex(dev->base);
  put_kv(" sectors=", d->sectors);
  put_kv(" queue=", num);
  put_str(" features=");
  put_hex(dev->features);
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
 * the device sees it once virtq_publish moves avail->idx. */
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
  virtq_push(&d->q, head);
  ++d->requests;
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
    const uint16_t before = d->q.avail_idx;
    while (nfree > 0 && next < p->count) {
      const uint32_t tag = free_tags[--nfree];
      offsets[tag] = request_offset(p, next++);
      if (p->op == OP_WRITE) fill(tag, offsets[tag], p->bytes);
      in_flight[tag] = 1;
      submit(d, tag, types[p->op], offsets[tag], p->bytes);
    }
    if (d->q.avail_idx != before) virtq_publish(&d->dev, &d->q);
    const int idx = virtq_wait_used(&d->dev, &d->q);
    if (idx < 0) return 1;
    for (; d->q.used_idx != (uint16_t)idx; ++d->q.used_idx, ++done) {
      const uint32_t id = vq.used.ring[d->q.used_idx & (d->q.num - 1)].id;
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
  if (!(d->dev.features & F_BLK_FLUSH)) return 0;
  struct phase p = {.op = OP_FLUSH, .count = 1};
  return run_phase(d, &p);
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
  struct blk d = {
      .dev = {.base = virtio_find(VIRTIO_ID_BLOCK, "virtio-blk"), .name = "virtio-blk"}};
  if (d.dev.base == 0 || blk_init(&d) != 0) return 1;
  if (d.sectors < mib << 11) {
    put_kv("shoal-guest: disk has ", d.sectors >> 11);
    put_str(" MiB, ");
    put_str(name);
    put_kv(" needs ", mib);
    put_str(" MiB\n");
    return 1;
  }
  if (write && (d.dev.features & F_BLK_RO)) {
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
  /* Every data page is written once before the clock starts, so that the phases time the
   * device path and not the first touches of guest RAM (shoal's dormant memory or the host
   * kernel's faults under QEMU: bench/faults measures those). */
  for (uint64_t a = DATA_BASE; a < DATA_END; a += 4096) *(volatile uint64_t*)a = 0;
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
  put_kv(" notifies=", d.dev.notifies);
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

/*
 * `chan N [BYTES]`: a polling virtio-console driver (virtio 1.x, device ID 3, virtio-mmio
 * version 2, no MULTIPORT: port 0's receiveq 0 and transmitq 1) run by vCPU 0 at CPL3,
 * talking to a peer on the host that echoes every byte. N strict round trips: message i (BYTES
 * bytes, chan_byte(i, k)) goes out in a transmit buffer, then the driver reads BYTES bytes back
 * and compares them with it. The console is a byte stream: the echo may come in several
 * receive buffers and a buffer is read across messages if it has to be. RX_BUFS receive
 * buffers stay posted (each re-posted once its bytes are read); transmit buffers come back
 * through the transmit used ring. Neither avail ring asks for interrupts: the driver polls
 * both used rings, and notifies a queue only when its used ring lacks VIRTQ_USED_F_NO_NOTIFY.
 */
#include "virtio_mmio.h"

#define VIRTIO_ID_CONSOLE 3
#define RECEIVEQ 0
#define TRANSMITQ 1
#define RX_BUFS 32
#define TX_BUFS 8
#define BUF_BYTES 4096u
#define NO_BUF RX_BUFS /* chan.cur when no receive buffer is being read */

/* The rings and buffers, 180 KiB in .bss (apart from virtio_blk.c's vq and far below its data
 * slots at 32 MiB). What the driver writes (descriptors +0, avail rings +0x2000, transmit
 * buffers +0x3000) and what the device writes (used rings +0xb000 and +0xc000, receive
 * buffers +0xd000) lie in different pages: in a pod, a page written from both sides moves
 * between hosts at every store. */
static struct {
  struct virtq_desc rx_desc[QUEUE_MAX];
  struct virtq_desc tx_desc[QUEUE_MAX];
  struct virtq_avail rx_avail __attribute__((aligned(4096)));
  struct virtq_avail tx_avail;
  uint8_t tx_buf[TX_BUFS][BUF_BYTES] __attribute__((aligned(4096)));
  struct virtq_used rx_used __attribute__((aligned(4096)));
  struct virtq_used tx_used __attribute__((aligned(4096)));
  uint8_t rx_buf[RX_BUFS][BUF_BYTES] __attribute__((aligned(4096)));
} cq __attribute__((aligned(4096)));

struct chan {
  struct virtio_dev dev;
  struct virtq rx, tx;
  uint32_t nrx, ntx;                   /* buffers in use: up to RX_BUFS, TX_BUFS */
  uint8_t rx_posted[RX_BUFS];          /* in the receiveq, the device's to fill */
  uint8_t tx_busy[TX_BUFS];            /* in the transmitq */
  uint32_t tx_free[TX_BUFS], ntx_free; /* the other transmit buffers */
  uint32_t cur, cur_len, cur_off;      /* the receive buffer being read, its bytes, read */
  uint64_t spins;                      /* polls without progress, for the Status checks */
};

/* Byte k of message i: with BYTES >= 8 any two messages differ in their first 8 bytes (an odd
 * multiplier is a bijection), so a stale or repeated echo does not pass. */
static inline uint8_t chan_byte(uint64_t i, uint32_t k) {
  const uint64_t w = (i + 1) * 0x9E3779B97F4A7C15ull;
  return (uint8_t)((w >> (8 * (k & 7))) + (k >> 3));
}

static int bad_used(const char* queue, uint32_t id, const char* what) {
  put_str("shoal-guest: virtio-console: ");
  put_str(queue);
  put_kv(" used ring returned descriptor ", id);
  put_str(what);
  put_str("\n");
  return 1;
}

static void post_rx(struct chan* c, uint32_t id) {
  c->rx_posted[id] = 1;
  virtq_push(&c->rx, (uint16_t)id);
  virtq_publish(&c->dev, &c->rx);
}

/* Device initialisation (spec 3.1.1): only VIRTIO_F_VERSION_1, both queues, then the receive
 * buffers posted. */
static int chan_init(struct chan* c) {
  struct virtio_dev* dev = &c->dev;
  if (virtio_init(dev, F_VERSION_1) != 0) return 1;
  c->rx = (struct virtq){
      .desc = cq.rx_desc, .avail = &cq.rx_avail, .used = &cq.rx_used, .index = RECEIVEQ};
  c->tx = (struct virtq){
      .desc = cq.tx_desc, .avail = &cq.tx_avail, .used = &cq.tx_used, .index = TRANSMITQ};
  if (virtq_setup(dev, &c->rx, 1) != 0 || virtq_setup(dev, &c->tx, 1) != 0) return 1;
  c->nrx = c->rx.num < RX_BUFS ? c->rx.num : RX_BUFS;
  c->ntx = c->tx.num < TX_BUFS ? c->tx.num : TX_BUFS;
  /* Descriptor i is buffer i, for good: posting a buffer is putting its index in a ring. */
  for (uint32_t i = 0; i < c->nrx; ++i)
    cq.rx_desc[i] = (struct virtq_desc){
        .addr = (uint64_t)cq.rx_buf[i], .len = BUF_BYTES, .flags = DESC_F_WRITE};
  for (uint32_t i = 0; i < c->ntx; ++i) cq.tx_desc[i].addr = (uint64_t)cq.tx_buf[i];
  for (uint32_t i = c->ntx; i-- > 0;) c->tx_free[c->ntx_free++] = i;
  c->cur = NO_BUF;
  if (virtio_driver_ok(dev)) return 1;
  for (uint32_t i = 0; i < c->nrx; ++i) {
    c->rx_posted[i] = 1;
    virtq_push(&c->rx, (uint16_t)i);
  }
  virtq_publish(dev, &c->rx);
  put_str("shoal-guest: virtio-console at ");
  put_hex(dev->base);
  put_kv(" receiveq=", c->rx.num);
  put_kv(" transmitq=", c->tx.num);
  put_str(" features=");
  put_hex(dev->features);
  put_str("\n");
  return 0;
}

/* Takes back the transmit buffers the device has consumed (their used len is 0). */
static int reclaim_tx(struct chan* c) {
  const uint16_t idx = virtq_used_idx(&c->tx);
  for (; c->tx.used_idx != idx; ++c->tx.used_idx) {
    const uint32_t id = cq.tx_used.ring[c->tx.used_idx & (c->tx.num - 1)].id;
    if (id >= c->ntx || !c->tx_busy[id])
      return bad_used("transmitq", id, ", which is not a buffer in flight");
    c->tx_busy[id] = 0;
    c->tx_free[c->ntx_free++] = id;
  }
  return 0;
}

/* Makes the next filled receive buffer the current one: 1 if there was one, 0 if not yet, -1
 * on a used element the driver cannot take. */
static int next_rx(struct chan* c) {
  if (virtq_used_idx(&c->rx) == c->rx.used_idx) return 0;
  const struct virtq_used_elem e = cq.rx_used.ring[c->rx.used_idx & (c->rx.num - 1)];
  ++c->rx.used_idx;
  if (e.id >= c->nrx || !c->rx_posted[e.id]) {
    bad_used("receiveq", e.id, ", which is not a posted buffer");
    return -1;
  }
  if (e.len > BUF_BYTES) {
    bad_used("receiveq", e.id, " with more bytes than the buffer holds");
    return -1;
  }
  c->rx_posted[e.id] = 0;
  c->cur = e.id;
  c->cur_len = e.len;
  c->cur_off = 0;
  return 1;
}

/* One poll without progress: the transmit used ring, and now and then Status (an MMIO read, a
 * VM exit). 1: give up. */
static int idle(struct chan* c) {
  if (reclaim_tx(c) != 0) return 1;
  if ((++c->spins & 0xfffff) == 0 && virtio_needs_reset(&c->dev)) return 1;
  cpu_relax();
  return 0;
}

/* Sends message i and reads its echo, adding the bytes that differ to *bad. */
static int round_trip(struct chan* c, uint64_t i, uint32_t bytes, uint64_t* bad) {
  if (reclaim_tx(c) != 0) return 1;
  while (c->ntx_free == 0)
    if (idle(c)) return 1;
  const uint32_t t = c->tx_free[--c->ntx_free];
  for (uint32_t k = 0; k < bytes; ++k) cq.tx_buf[t][k] = chan_byte(i, k);
  cq.tx_desc[t].len = bytes;
  c->tx_busy[t] = 1;
  virtq_push(&c->tx, (uint16_t)t);
  virtq_publish(&c->dev, &c->tx);

  for (uint32_t got = 0; got < bytes;) {
    if (c->cur == NO_BUF) {
      const int r = next_rx(c);
      if (r < 0) return 1;
      if (r == 0) {
        if (idle(c)) return 1;
        continue;
      }
    }
    const uint8_t* data = cq.rx_buf[c->cur];
    for (; got < bytes && c->cur_off < c->cur_len; ++got, ++c->cur_off)
      *bad += data[c->cur_off] != chan_byte(i, got);
    if (c->cur_off == c->cur_len) {
      post_rx(c, c->cur);
      c->cur = NO_BUF;
    }
  }
  return 0;
}

/* Bytes that came back beyond the N echoes and are already here (the rest of the current
 * buffer and any filled ones): the peer sent more than it was sent. */
static uint64_t extra_bytes(struct chan* c) {
  uint64_t extra = 0;
  if (c->cur != NO_BUF) extra += c->cur_len - c->cur_off;
  while (next_rx(c) > 0) extra += c->cur_len;
  return extra;
}

/* num / den with three decimals (rounded to the nearest thousandth) */
static void put_milli(uint64_t num, uint64_t den) {
  const uint64_t milli = den == 0 ? 0 : (num * 1000 + den / 2) / den;
  put_u64(milli / 1000);
  put_char('.');
  put_char((char)('0' + milli / 100 % 10));
  put_char((char)('0' + milli / 10 % 10));
  put_char((char)('0' + milli % 10));
}

int run_chan(uint32_t cpu, uint64_t n, uint64_t bytes) {
  if (cpu != 0) return -1;
  if (bytes == 0 || bytes > BUF_BYTES) {
    put_kv("shoal-guest: chan: BYTES must be 1 to ", BUF_BYTES);
    put_str("\n");
    return 1;
  }
  struct chan c = {
      .dev = {.base = virtio_find(VIRTIO_ID_CONSOLE, "virtio-console"), .name = "virtio-console"}};
  if (c.dev.base == 0 || chan_init(&c) != 0) return 1;
  const uint64_t khz = calibrate_tsc_khz();
  if (khz == 0) {
    put_str("shoal-guest: TSC calibration failed: PIT channel 2 does not count\n");
    return 1;
  }
  /* Round trip 0 waits in the device until the peer connects: the clock and the notify count
   * start after it, so both cover round trips 1..N-1 (N - 1 of them). */
  uint64_t bad = 0;
  if (n > 0 && round_trip(&c, 0, (uint32_t)bytes, &bad) != 0) return 1;
  c.dev.notifies = 0;
  const uint64_t t0 = rdtsc();
  for (uint64_t i = 1; i < n; ++i)
    if (round_trip(&c, i, (uint32_t)bytes, &bad) != 0) return 1;
  const uint64_t cycles = rdtsc() - t0;
  const uint64_t notifies = c.dev.notifies;
  const uint64_t timed = n > 1 ? n - 1 : 1;
  bad += extra_bytes(&c);

  put_kv("shoal-guest: chan n=", n);
  put_kv(" bytes=", bytes);
  put_kv(" round_trips_per_s=", per_second(timed, cycles, khz));
  put_kv(" notifies=", notifies);
  put_str(" notifies_per_message=");
  put_milli(notifies, timed);
  put_kv(" cycles=", cycles);
  put_kv(" tsc_khz=", khz);
  put_kv(" bad=", bad);
  put_str("\n");
  return bad == 0 ? 0 : 1;
}

/*
 * What the test guest's polling virtio drivers (virtio_blk.c, virtio_chan.c) share: the
 * virtio-mmio (version 2) registers, discovery of a device by its ID, initialisation with
 * feature negotiation (spec 3.1.1), split virtqueues (set up with VIRTQ_AVAIL_F_NO_INTERRUPT:
 * the drivers poll), publishing with a notify only where the device asks for one, and the
 * PIT-based TSC calibration the result lines are timed with.
 */
#pragma once

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
#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_NEEDS_RESET 0x40
#define STATUS_FAILED 0x80

#define F_VERSION_1 (1ull << 32)
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1

/* The ring size the structures have room for; a queue uses the largest power of two up to
 * this and its QueueNumMax. */
#define QUEUE_MAX 256

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

struct virtio_dev {
  uint64_t base, features;
  uint32_t status;   /* what the driver last wrote to Status */
  const char* name;  /* "virtio-blk": how messages name the device */
  uint64_t notifies; /* QueueNotify writes, on any queue */
};

/* One split virtqueue: the rings (the driver places them; what it writes, desc and avail, and
 * what the device writes, used, belong in different pages: in a pod, a page written from both
 * sides moves between hosts at every store) and the driver's free-running indices. */
struct virtq {
  struct virtq_desc* desc;
  struct virtq_avail* avail;
  struct virtq_used* used;
  uint16_t index; /* the queue's number (QueueSel, QueueNotify) */
  uint16_t num, avail_idx, used_idx;
};

static inline uint32_t mmio_read(const struct virtio_dev* d, uint32_t reg) {
  return *(volatile uint32_t*)(d->base + reg);
}
static inline void mmio_write(const struct virtio_dev* d, uint32_t reg, uint32_t v) {
  *(volatile uint32_t*)(d->base + reg) = v;
}
static inline void mmio_write64(const struct virtio_dev* d, uint32_t reg, uint64_t v) {
  mmio_write(d, reg, (uint32_t)v);
  mmio_write(d, reg + 4, (uint32_t)(v >> 32));
}

/* " key=value", as the result lines have them (or any text and a number) */
void put_kv(const char* key, uint64_t v);

/* Sets FAILED (spec 3.1.1: the driver gave up) and prints "shoal-guest: NAME: WHAT"; 1. */
int virtio_fail(struct virtio_dev* d, const char* what);
/* 1 (having failed the device) if it set DEVICE_NEEDS_RESET. Status is an MMIO read, a VM
 * exit: pollers look at it only now and then. */
int virtio_needs_reset(struct virtio_dev* d);

/* The base of the first virtio-mmio version 2 device with this ID; 0 with a message (legacy
 * transport, or "shoal-guest: no NAME device") if there is none. */
uint64_t virtio_find(uint32_t device_id, const char* name);

/* Reset, ACKNOWLEDGE, DRIVER, and the features: d->features = what the device offers of
 * `wanted` (which must include VIRTIO_F_VERSION_1, required), then FEATURES_OK. */
int virtio_init(struct virtio_dev* d, uint64_t wanted);

/* Sets up queue q->index with the rings q points to (zeroed here; the avail ring asks for no
 * interrupts) and makes it ready; q->num: the largest power of two up to QUEUE_MAX and the
 * device's maximum, at least min_num. 1 with the device failed if that cannot be. */
int virtq_setup(struct virtio_dev* d, struct virtq* q, uint32_t min_num);

/* DRIVER_OK, then 1 if the device already wants a reset. */
int virtio_driver_ok(struct virtio_dev* d);

/* Puts a descriptor chain in the avail ring; the device sees it once virtq_publish moves
 * avail->idx. */
static inline void virtq_push(struct virtq* q, uint16_t head) {
  q->avail->ring[q->avail_idx & (q->num - 1)] = head;
  ++q->avail_idx;
}

/* Moves avail->idx and notifies the queue unless its used ring says VIRTQ_USED_F_NO_NOTIFY. */
void virtq_publish(struct virtio_dev* d, struct virtq* q);

/* used->idx as the device last wrote it (acquire: the elements before it are visible). */
static inline uint16_t virtq_used_idx(const struct virtq* q) {
  return __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
}

/* Spins until used->idx moves past q->used_idx and returns it; -1 if the device wants a
 * reset. */
int virtq_wait_used(struct virtio_dev* d, struct virtq* q);

/* TSC kHz from the PIT (channel 2); 0 if the PIT does not count. */
uint64_t calibrate_tsc_khz(void);

static inline uint64_t per_second(uint64_t n, uint64_t cycles, uint64_t khz) {
  return cycles == 0 ? 0 : n * khz * 1000 / cycles;
}

/* The device side of one split virtqueue (virtio 1.2 §2.7): popping heads
 * from the available ring, walking descriptor chains (with indirect tables),
 * returning chains on the used ring, and both directions of notification
 * suppression (flags and EVENT_IDX).
 *
 * Everything read from the rings is written by the guest, possibly while we
 * read it: every value is read once, and every index and length is checked
 * before use. Used only by the queue's worker thread. */
#ifndef UBIBLK_VHOST_VIRTQUEUE_H
#define UBIBLK_VHOST_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_ring.h>

#include "vhost/guest_memory.h"

/* Split rings hold at most 32768 descriptors (virtio 1.2 §2.7). */
#define VIRTQUEUE_MAX_SIZE 32768u
/* An indirect table holds at most this many descriptors (its len / 16). */
#define VIRTQUEUE_MAX_INDIRECT 65535u

/* Whether the three parts of a ring meet virtio's alignment (virtio 1.2
 * §2.7: VRING_DESC_ALIGN_SIZE 16, VRING_AVAIL_ALIGN_SIZE 2,
 * VRING_USED_ALIGN_SIZE 4), whether given as guest or front-end addresses. */
static inline bool virtqueue_rings_aligned(uint64_t desc, uint64_t avail, uint64_t used)
{
	return desc % VRING_DESC_ALIGN_SIZE == 0 && avail % VRING_AVAIL_ALIGN_SIZE == 0 &&
	       used % VRING_USED_ALIGN_SIZE == 0;
}

struct virtqueue {
	uint32_t num;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t next_avail;
	uint16_t next_used;
	/* next_used when the driver was last considered for a notification. */
	uint16_t signalled_used;
	bool event_idx;
	/* The driver published an impossible avail index or head: the queue is
	 * not processed any more until it is set up again. */
	bool broken;
};

/* A descriptor as the walk yields it (indirect descriptors are followed,
 * not yielded). */
struct virtqueue_desc {
	uint64_t addr;
	uint32_t len;
	bool writable;
};

struct virtqueue_chain {
	const struct vring_desc *table;
	uint32_t table_size;
	uint32_t next;
	uint32_t steps_left;
	bool in_indirect;
	bool done;
};

/* Resolves the three rings of a queue of `num` entries in `mem`. Returns 0,
 * -EINVAL for a bad size or a misaligned ring, -EFAULT when a ring is not
 * inside one mapped region. Indices and the event_idx mode are kept. */
int virtqueue_map(struct virtqueue *vq, const struct guest_memory *mem, uint32_t num,
		  uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa);
/* The used index the guest memory holds now. */
uint16_t virtqueue_read_used_idx(const struct virtqueue *vq);

/* Takes the next available head: 1 and *head set, 0 when the ring is empty,
 * -EIO when the ring is (or just became) broken (logged once). */
int virtqueue_pop(struct virtqueue *vq, uint16_t *head);
/* Gives back the head popped last: the next pop reads it from the ring
 * again. For a request that cannot start yet. */
void virtqueue_unpop(struct virtqueue *vq);
/* True when the driver has published heads we have not popped yet. */
bool virtqueue_has_avail(const struct virtqueue *vq);

/* Walks the chain starting at `head` (which must be < num). next() returns 1
 * with *out filled, 0 after the last descriptor, or -EINVAL when the chain is
 * malformed: an index out of range, more steps than its table has entries
 * (a loop), a bad or nested indirect table, or one outside guest memory. */
void virtqueue_chain_start(const struct virtqueue *vq, uint16_t head,
			   struct virtqueue_chain *chain);
int virtqueue_chain_next(struct virtqueue_chain *chain, const struct guest_memory *mem,
			 struct virtqueue_desc *out);

/* Writes a used element; the driver sees it after virtqueue_publish_used(). */
void virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t len);
void virtqueue_publish_used(struct virtqueue *vq);
/* After publishing: should the driver be notified of the entries published
 * since the last call? Honours used_event (EVENT_IDX) or
 * VRING_AVAIL_F_NO_INTERRUPT. */
bool virtqueue_should_notify(struct virtqueue *vq);

/* Driver->device notifications: off while the worker polls the ring, on
 * before it sleeps. enable returns true when heads arrived meanwhile (then
 * the caller must process them instead of sleeping). */
void virtqueue_disable_notify(struct virtqueue *vq);
bool virtqueue_enable_notify(struct virtqueue *vq);

#endif

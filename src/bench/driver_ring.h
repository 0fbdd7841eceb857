/* The driver side of one split virtqueue (virtio 1.2 §2.7): the bench fills
 * descriptors and the avail ring, the device fills the used ring. Used by one
 * thread only. Notifications go both ways with as few syscalls as the device
 * allows: the driver kicks once per batch and only when the device asked for
 * it (VRING_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX), and requests
 * interrupts only when it is going to sleep on them. */
#ifndef UBIBLK_BENCH_DRIVER_RING_H
#define UBIBLK_BENCH_DRIVER_RING_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct driver_ring {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t size;
	uint16_t avail_next; /* next avail slot to fill; published by driver_ring_publish() */
	uint16_t kicked_at;  /* avail index at the last kick decision */
	uint16_t last_used;  /* next used entry to consume */
	bool event_idx;
	int kick_fd;
	uint64_t kicks;
};

/* Bytes the three ring parts need for `size` entries, and where the avail
 * and used rings start (the used ring on its own page: the device writes it). */
size_t driver_ring_avail_offset(uint16_t size);
size_t driver_ring_used_offset(uint16_t size);
size_t driver_ring_bytes(uint16_t size);

/* Lay out an empty ring in zeroed memory at `base`. */
void driver_ring_init(struct driver_ring *r, void *base, uint16_t size, bool event_idx,
		      int kick_fd);

/* Queue chain `head` in the avail ring, not yet visible to the device. */
static inline void driver_ring_push(struct driver_ring *r, uint16_t head)
{
	r->avail->ring[r->avail_next & (uint16_t)(r->size - 1)] = head;
	r->avail_next++;
}

/* Make pushed chains visible and kick the device if it wants a kick.
 * 0 or a negative errno from writing the kick eventfd. */
int driver_ring_publish(struct driver_ring *r);

/* Used entries the device has published and the driver not yet consumed. */
static inline uint16_t driver_ring_used_pending(const struct driver_ring *r)
{
	return (uint16_t)(__atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE) - r->last_used);
}

static inline struct vring_used_elem driver_ring_take_used(struct driver_ring *r)
{
	struct vring_used_elem elem = r->used->ring[r->last_used & (uint16_t)(r->size - 1)];
	r->last_used++;
	return elem;
}

/* Ask for an interrupt on the next completion (`wanted`), or for none while
 * polling. With EVENT_IDX this moves used_event and must be repeated after
 * consuming entries. Ends with a full barrier, so a caller about to sleep can
 * re-check driver_ring_used_pending() without missing a completion. */
void driver_ring_request_interrupts(struct driver_ring *r, bool wanted);

/* While polling with EVENT_IDX: keep used_event ahead of the entries just
 * consumed so the device never finds a reason to interrupt. No barrier: a
 * stale value only costs the device one needless interrupt. */
static inline void driver_ring_keep_interrupts_off(struct driver_ring *r)
{
	if (r->event_idx)
		__atomic_store_n(&r->avail->ring[r->size], (uint16_t)(r->last_used + 0x8000u),
				 __ATOMIC_RELAXED);
}

#endif

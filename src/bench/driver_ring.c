#include "bench/driver_ring.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#define RING_PAGE 4096u

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

size_t driver_ring_avail_offset(uint16_t size)
{
	return sizeof(struct vring_desc) * size;
}

size_t driver_ring_used_offset(uint16_t size)
{
	/* flags, idx, ring[size], used_event */
	size_t avail_end = driver_ring_avail_offset(size) + sizeof(uint16_t) * (3u + size);
	return align_up(avail_end, RING_PAGE);
}

size_t driver_ring_bytes(uint16_t size)
{
	/* flags, idx, ring[size], avail_event */
	size_t used_bytes = sizeof(uint16_t) * 3u + sizeof(struct vring_used_elem) * size;
	return align_up(driver_ring_used_offset(size) + used_bytes, RING_PAGE);
}

void driver_ring_init(struct driver_ring *r, void *base, uint16_t size, bool event_idx, int kick_fd)
{
	r->desc = base;
	r->avail = (struct vring_avail *)((char *)base + driver_ring_avail_offset(size));
	r->used = (struct vring_used *)((char *)base + driver_ring_used_offset(size));
	r->size = size;
	r->avail_next = 0;
	r->kicked_at = 0;
	r->last_used = 0;
	r->event_idx = event_idx;
	r->kick_fd = kick_fd;
	r->kicks = 0;
}

static inline uint16_t *used_event(struct driver_ring *r)
{
	return &r->avail->ring[r->size];
}

static inline uint16_t *avail_event(struct driver_ring *r)
{
	return (uint16_t *)&r->used->ring[r->size];
}

int driver_ring_publish(struct driver_ring *r)
{
	uint16_t new_idx = r->avail_next;
	uint16_t old_idx = r->kicked_at;
	if (new_idx == old_idx)
		return 0;
	__atomic_store_n(&r->avail->idx, new_idx, __ATOMIC_RELEASE);
	/* The device may be about to stop polling: order our idx store before
	 * reading its notification wishes, as it orders its wishes before its
	 * final re-read of avail->idx. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	r->kicked_at = new_idx;
	bool kick;
	if (r->event_idx)
		kick = vring_need_event(__atomic_load_n(avail_event(r), __ATOMIC_RELAXED), new_idx,
					old_idx);
	else
		kick =
		    !(__atomic_load_n(&r->used->flags, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY);
	if (!kick)
		return 0;
	uint64_t one = 1;
	ssize_t n;
	do {
		n = write(r->kick_fd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	r->kicks++;
	return 0;
}

void driver_ring_request_interrupts(struct driver_ring *r, bool wanted)
{
	if (r->event_idx) {
		/* Notify when entry `last_used` is used; when polling, point
		 * half the index space away so no batch ever crosses it. */
		uint16_t at = wanted ? r->last_used : (uint16_t)(r->last_used + 0x8000u);
		__atomic_store_n(used_event(r), at, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&r->avail->flags, wanted ? 0 : VRING_AVAIL_F_NO_INTERRUPT,
				 __ATOMIC_RELAXED);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Split virtqueue, device side. The guest writes the avail ring and the
 * descriptor tables concurrently with us, so ring fields are read with
 * single atomic loads and descriptors are copied out before they are looked
 * at; nothing read from the guest is trusted before it is checked. */
#include "vhost/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "common/common.h"

static inline uint16_t guest_load16(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline void guest_store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static uint16_t *used_event_ptr(const struct virtqueue *vq)
{
	return &vq->avail->ring[vq->num];
}

static uint16_t *avail_event_ptr(const struct virtqueue *vq)
{
	return (uint16_t *)&vq->used->ring[vq->num];
}

static int map_ring(const struct guest_memory *mem, uint64_t gpa, uint64_t len, uint64_t align,
		    void **out)
{
	void *p = guest_memory_ptr(mem, gpa, len);
	if (!p)
		return -EFAULT;
	if (gpa % align != 0 || (uintptr_t)p % align != 0)
		return -EINVAL;
	*out = p;
	return 0;
}

int virtqueue_map(struct virtqueue *vq, const struct guest_memory *mem, uint32_t num,
		  uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa)
{
	if (num == 0 || num > VIRTQUEUE_MAX_SIZE)
		return -EINVAL;
	/* Sizes include used_event and avail_event: both are always mapped. */
	uint64_t desc_len = 16ull * num;
	uint64_t avail_len = 4 + 2ull * num + 2;
	uint64_t used_len = 4 + 8ull * num + 2;
	void *desc;
	void *avail;
	void *used;
	int rc = map_ring(mem, desc_gpa, desc_len, VRING_DESC_ALIGN_SIZE, &desc);
	if (rc == 0)
		rc = map_ring(mem, avail_gpa, avail_len, VRING_AVAIL_ALIGN_SIZE, &avail);
	if (rc == 0)
		rc = map_ring(mem, used_gpa, used_len, VRING_USED_ALIGN_SIZE, &used);
	if (rc < 0)
		return rc;
	vq->num = num;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	return 0;
}

uint16_t virtqueue_read_used_idx(const struct virtqueue *vq)
{
	return guest_load16(&vq->used->idx);
}

static void mark_broken(struct virtqueue *vq, const char *why, unsigned value)
{
	if (!vq->broken)
		log_error("virtqueue: %s (%u, queue size %u); the queue is stopped until it is set "
			  "up again",
			  why, value, vq->num);
	vq->broken = true;
}

int virtqueue_pop(struct virtqueue *vq, uint16_t *head)
{
	if (vq->broken)
		return -EIO;
	/* Acquire: the ring entries we read next were written before idx. */
	uint16_t avail_idx = le16toh(__atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE));
	uint16_t pending = (uint16_t)(avail_idx - vq->next_avail);
	if (pending == 0)
		return 0;
	if (pending > vq->num) {
		mark_broken(vq, "avail index moved further than the ring size", pending);
		return -EIO;
	}
	uint16_t h = guest_load16(&vq->avail->ring[vq->next_avail % vq->num]);
	if (h >= vq->num) {
		mark_broken(vq, "available head out of range", h);
		return -EIO;
	}
	vq->next_avail++;
	*head = h;
	return 1;
}

void virtqueue_unpop(struct virtqueue *vq)
{
	vq->next_avail--;
}

bool virtqueue_has_avail(const struct virtqueue *vq)
{
	return guest_load16(&vq->avail->idx) != vq->next_avail;
}

void virtqueue_chain_start(const struct virtqueue *vq, uint16_t head, struct virtqueue_chain *chain)
{
	chain->table = vq->desc;
	chain->table_size = vq->num;
	chain->next = head;
	chain->steps_left = vq->num;
	chain->in_indirect = false;
	chain->done = false;
}

int virtqueue_chain_next(struct virtqueue_chain *chain, const struct guest_memory *mem,
			 struct virtqueue_desc *out)
{
	if (chain->done)
		return 0;
	for (;;) {
		/* A chain visiting more descriptors than its table holds loops. */
		if (chain->next >= chain->table_size || chain->steps_left == 0)
			return -EINVAL;
		chain->steps_left--;
		struct vring_desc d;
		memcpy(&d, &chain->table[chain->next], sizeof(d));
		guest_compiler_barrier();
		uint64_t addr = le64toh(d.addr);
		uint32_t len = le32toh(d.len);
		uint16_t flags = le16toh(d.flags);

		if (flags & VRING_DESC_F_INDIRECT) {
			if (chain->in_indirect || len == 0 ||
			    len % sizeof(struct vring_desc) != 0 ||
			    len / sizeof(struct vring_desc) > VIRTQUEUE_MAX_INDIRECT)
				return -EINVAL;
			const struct vring_desc *table = guest_memory_ptr(mem, addr, len);
			if (!table)
				return -EINVAL;
			/* The indirect descriptor's own NEXT is ignored: the chain
			 * continues in, and ends with, the indirect table. */
			chain->table = table;
			chain->table_size = len / sizeof(struct vring_desc);
			chain->steps_left = chain->table_size;
			chain->next = 0;
			chain->in_indirect = true;
			continue;
		}
		out->addr = addr;
		out->len = len;
		out->writable = (flags & VRING_DESC_F_WRITE) != 0;
		if (flags & VRING_DESC_F_NEXT)
			chain->next = le16toh(d.next);
		else
			chain->done = true;
		return 1;
	}
}

void virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	struct vring_used_elem *elem = &vq->used->ring[vq->next_used % vq->num];
	__atomic_store_n(&elem->id, htole32(head), __ATOMIC_RELAXED);
	__atomic_store_n(&elem->len, htole32(len), __ATOMIC_RELAXED);
	vq->next_used++;
}

void virtqueue_publish_used(struct virtqueue *vq)
{
	/* Release: the elements are visible before the index that exposes them. */
	__atomic_store_n(&vq->used->idx, htole16(vq->next_used), __ATOMIC_RELEASE);
}

bool virtqueue_should_notify(struct virtqueue *vq)
{
	/* Order our used->idx store before reading the driver's suppression
	 * state; pairs with the driver's barrier between updating used_event
	 * (or flags) and re-reading used->idx. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vq->event_idx) {
		uint16_t old = vq->signalled_used;
		uint16_t now = vq->next_used;
		vq->signalled_used = now;
		return vring_need_event(guest_load16(used_event_ptr(vq)), now, old);
	}
	return !(guest_load16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
}

void virtqueue_disable_notify(struct virtqueue *vq)
{
	/* With EVENT_IDX avail_event is simply left behind: the driver kicks
	 * only when its index passes it, which a polling worker never lets
	 * happen. */
	if (!vq->event_idx)
		guest_store16(&vq->used->flags, VRING_USED_F_NO_NOTIFY);
}

bool virtqueue_enable_notify(struct virtqueue *vq)
{
	if (vq->event_idx)
		guest_store16(avail_event_ptr(vq), vq->next_avail);
	else
		guest_store16(&vq->used->flags, 0);
	/* Publish the re-arm before re-reading avail->idx: a head the driver
	 * added before seeing it would otherwise get no kick and no poll. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return virtqueue_has_avail(vq);
}

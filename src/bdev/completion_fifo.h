/* A FIFO of completions produced without the kernel: every completion of the
 * sync and null engines, and the io_uring engine's immediate ones (a flush
 * under write_through, a zero-length operation, a rejected operation).
 *
 * Sized for a channel's depth up front, so admitted operations never
 * allocate. Rejected operations are not bounded by the depth (a caller may add
 * any number beyond it), so the FIFO doubles when full instead of dropping
 * one: a lost completion would leave its caller waiting forever. */
#ifndef UBIBLK_BDEV_COMPLETION_FIFO_H
#define UBIBLK_BDEV_COMPLETION_FIFO_H

#include <stdbool.h>
#include <stdint.h>

struct completion_fifo_entry {
	uint64_t id;
	int32_t result;
	bool counted; /* admitted against the channel depth (rejects are not) */
};

struct completion_fifo {
	struct completion_fifo_entry *slots;
	uint32_t mask; /* capacity - 1; capacity is a power of two */
	uint32_t head; /* free-running: slot = head & mask */
	uint32_t tail;
};

int completion_fifo_init(struct completion_fifo *f, uint32_t min_capacity);
void completion_fifo_fini(struct completion_fifo *f);
/* Grows the FIFO; aborts the process when memory runs out. */
void completion_fifo_grow(struct completion_fifo *f);

static inline uint32_t completion_fifo_count(const struct completion_fifo *f)
{
	return f->tail - f->head;
}

static inline void completion_fifo_push(struct completion_fifo *f, uint64_t id, int result,
					bool counted)
{
	if (completion_fifo_count(f) > f->mask)
		completion_fifo_grow(f);
	struct completion_fifo_entry *e = &f->slots[f->tail & f->mask];
	e->id = id;
	e->result = result;
	e->counted = counted;
	f->tail++;
}

static inline bool completion_fifo_pop(struct completion_fifo *f, struct completion_fifo_entry *out)
{
	if (f->head == f->tail)
		return false;
	*out = f->slots[f->head & f->mask];
	f->head++;
	return true;
}

#endif

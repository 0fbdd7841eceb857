#include "bdev/completion_fifo.h"

#include "common/common.h"

#include <errno.h>
#include <stdlib.h>

/* Enough for every completion of a BDEV_MAX_DEPTH channel many times over;
 * beyond it the caller is adding without ever polling. */
#define COMPLETION_FIFO_MAX_CAPACITY (1u << 30)

int completion_fifo_init(struct completion_fifo *f, uint32_t min_capacity)
{
	uint32_t capacity = 8;
	while (capacity < min_capacity && capacity < COMPLETION_FIFO_MAX_CAPACITY)
		capacity <<= 1;
	f->slots = calloc(capacity, sizeof(*f->slots));
	if (!f->slots)
		return -ENOMEM;
	f->mask = capacity - 1;
	f->head = 0;
	f->tail = 0;
	return 0;
}

void completion_fifo_fini(struct completion_fifo *f)
{
	free(f->slots);
	f->slots = NULL;
}

void completion_fifo_grow(struct completion_fifo *f)
{
	uint32_t capacity = f->mask + 1;
	struct completion_fifo_entry *slots = NULL;
	if (capacity < COMPLETION_FIFO_MAX_CAPACITY)
		slots = calloc((size_t)capacity * 2, sizeof(*slots));
	if (!slots) {
		log_error("bdev: cannot hold %u pending completions; aborting", capacity + 1);
		abort();
	}
	uint32_t count = completion_fifo_count(f);
	for (uint32_t i = 0; i < count; i++)
		slots[i] = f->slots[(f->head + i) & f->mask];
	free(f->slots);
	f->slots = slots;
	f->mask = capacity * 2 - 1;
	f->head = 0;
	f->tail = count;
}

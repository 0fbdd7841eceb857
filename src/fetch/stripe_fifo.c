/* Ring buffer that doubles when full. */
#include "fetch/stripe_fifo.h"

#include <errno.h>
#include <stdlib.h>

#define FIFO_MIN_CAPACITY 16u

static int grow(struct stripe_fifo *f)
{
	size_t capacity = f->capacity ? f->capacity * 2 : FIFO_MIN_CAPACITY;
	if (capacity < f->capacity || capacity > SIZE_MAX / sizeof(uint64_t))
		return -ENOMEM;
	uint64_t *items = malloc(capacity * sizeof(uint64_t));
	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < f->count; i++)
		items[i] = stripe_fifo_peek(f, i);
	free(f->items);
	f->items = items;
	f->capacity = capacity;
	f->head = 0;
	return 0;
}

int stripe_fifo_push(struct stripe_fifo *f, uint64_t stripe)
{
	if (f->count == f->capacity) {
		int rc = grow(f);
		if (rc < 0)
			return rc;
	}
	f->items[(f->head + f->count) & (f->capacity - 1)] = stripe;
	f->count++;
	return 0;
}

bool stripe_fifo_pop(struct stripe_fifo *f, uint64_t *stripe)
{
	if (f->count == 0)
		return false;
	*stripe = f->items[f->head];
	f->head = (f->head + 1) & (f->capacity - 1);
	f->count--;
	return true;
}

uint64_t stripe_fifo_peek(const struct stripe_fifo *f, size_t i)
{
	return f->items[(f->head + i) & (f->capacity - 1)];
}

void stripe_fifo_free(struct stripe_fifo *f)
{
	free(f->items);
	*f = (struct stripe_fifo){0};
}

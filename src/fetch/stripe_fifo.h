/* A growable FIFO of stripe numbers. Callers keep each stripe in a FIFO at
 * most once (a per-stripe flag says whether it is queued), so a FIFO never
 * holds more entries than the disk has stripes. */
#ifndef UBIBLK_FETCH_STRIPE_FIFO_H
#define UBIBLK_FETCH_STRIPE_FIFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stripe_fifo {
	uint64_t *items;
	size_t capacity; /* 0 or a power of two */
	size_t head;
	size_t count;
};

/* 0 or -ENOMEM (the FIFO is then unchanged). */
int stripe_fifo_push(struct stripe_fifo *f, uint64_t stripe);
bool stripe_fifo_pop(struct stripe_fifo *f, uint64_t *stripe);
/* The i-th entry from the head; i < count. */
uint64_t stripe_fifo_peek(const struct stripe_fifo *f, size_t i);
void stripe_fifo_free(struct stripe_fifo *f);

#endif

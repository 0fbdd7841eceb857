/* A ring buffer of requests; head and count rather than free-running indices
 * because the capacity (the channel depth) need not be a power of two. */
#include "lazy/lazy_queue.h"

#include <errno.h>
#include <stdlib.h>

int lazy_queue_init(struct lazy_queue *q, uint32_t capacity)
{
	q->slots = calloc(capacity ? capacity : 1, sizeof(*q->slots));
	if (!q->slots)
		return -ENOMEM;
	q->capacity = capacity;
	q->head = 0;
	q->count = 0;
	return 0;
}

void lazy_queue_fini(struct lazy_queue *q)
{
	free(q->slots);
	q->slots = NULL;
}

void lazy_queue_push(struct lazy_queue *q, const struct lazy_request *r)
{
	uint32_t tail = q->head + q->count;
	if (tail >= q->capacity)
		tail -= q->capacity;
	q->slots[tail] = *r;
	q->count++;
}

const struct lazy_request *lazy_queue_head(const struct lazy_queue *q)
{
	return q->count ? &q->slots[q->head] : NULL;
}

void lazy_queue_pop(struct lazy_queue *q)
{
	if (!q->count)
		return;
	q->head = q->head + 1 == q->capacity ? 0 : q->head + 1;
	q->count--;
}

/* The FIFO of requests a lazy channel holds back until their stripes are
 * fetched (and, for writes with track_written, marked WRITTEN). Sized to the
 * channel depth once: the depth bounds the requests a channel has admitted,
 * so the queue never fills and queueing never allocates. */
#ifndef UBIBLK_LAZY_LAZY_QUEUE_H
#define UBIBLK_LAZY_LAZY_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

enum lazy_op { LAZY_OP_READ, LAZY_OP_WRITE, LAZY_OP_DISCARD, LAZY_OP_WRITE_ZEROES };

struct lazy_request {
	enum lazy_op op;
	int iovcnt;		 /* read / write */
	const struct iovec *iov; /* the caller's array, valid until completion */
	uint64_t sector;
	uint64_t sectors; /* discard / write-zeroes length */
	uint64_t first_stripe;
	uint64_t last_stripe;
	uint64_t id;
};

struct lazy_queue {
	struct lazy_request *slots;
	uint32_t capacity;
	uint32_t head;
	uint32_t count;
};

int lazy_queue_init(struct lazy_queue *q, uint32_t capacity);
void lazy_queue_fini(struct lazy_queue *q);

static inline bool lazy_queue_empty(const struct lazy_queue *q)
{
	return q->count == 0;
}

static inline bool lazy_queue_full(const struct lazy_queue *q)
{
	return q->count == q->capacity;
}

/* The caller checks lazy_queue_full() first. */
void lazy_queue_push(struct lazy_queue *q, const struct lazy_request *r);
/* The oldest request, or NULL. */
const struct lazy_request *lazy_queue_head(const struct lazy_queue *q);
void lazy_queue_pop(struct lazy_queue *q);

#endif

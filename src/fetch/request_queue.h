/* The hand-over between I/O threads and the fetch worker: fetch and written
 * requests (each stripe queued at most once per kind), the eventfd the worker
 * sleeps on, and the eventfds of the subscribers it notifies. The only part
 * of the worker behind a lock: every call may come from any thread. */
#ifndef UBIBLK_FETCH_REQUEST_QUEUE_H
#define UBIBLK_FETCH_REQUEST_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch/stripe_fifo.h"

#define REQUEST_FETCH	0x01u
#define REQUEST_WRITTEN 0x02u

struct request_queue {
	pthread_mutex_t lock;
	int wake_fd; /* eventfd the worker sleeps on */
	bool stopped;
	uint64_t stripes;
	uint8_t *queued; /* per stripe: REQUEST_* bits currently in the FIFOs */
	struct stripe_fifo fetch;
	struct stripe_fifo written;
	int *subscribers;
	size_t subscriber_count;
	size_t subscriber_capacity;
};

int request_queue_init(struct request_queue *q, uint64_t stripes);
void request_queue_fini(struct request_queue *q);
/* kind: REQUEST_FETCH or REQUEST_WRITTEN. 0, -ESHUTDOWN, -EINVAL, -ENOMEM. */
int request_queue_push(struct request_queue *q, uint64_t stripe, unsigned kind);
/* Moves everything queued into the caller's (empty) FIFOs. */
void request_queue_take(struct request_queue *q, struct stripe_fifo *fetch,
			struct stripe_fifo *written);
/* Refuses new requests from now on (they get -ESHUTDOWN) and wakes the
 * worker; what is still queued stays for request_queue_close(). */
void request_queue_stop(struct request_queue *q);
bool request_queue_stopped(struct request_queue *q);
/* Refuses new requests from now on; returns what was still queued. */
void request_queue_close(struct request_queue *q, struct stripe_fifo *fetch,
			 struct stripe_fifo *written);
void request_queue_wake(struct request_queue *q);
int request_queue_subscribe(struct request_queue *q, int fd);
void request_queue_unsubscribe(struct request_queue *q, int fd);
void request_queue_notify(struct request_queue *q);

#endif

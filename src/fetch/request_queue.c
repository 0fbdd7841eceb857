/* The hand-over between I/O threads and the worker. A stripe is in each FIFO
 * at most once (the `queued` bits), so however often the guest touches an
 * unfetched stripe the queue's memory stays bounded by the stripe count.
 * Producers write the eventfd only when the queue goes from empty to
 * non-empty for that kind, keeping the common path to one lock. */
#include "fetch/request_queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/common.h"

int request_queue_init(struct request_queue *q, uint64_t stripes)
{
	memset(q, 0, sizeof(*q));
	q->wake_fd = -1;
	q->stripes = stripes;
	q->queued = calloc(stripes ? stripes : 1, 1);
	if (!q->queued)
		return -ENOMEM;
	q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->wake_fd < 0) {
		int rc = -errno;
		free(q->queued);
		q->queued = NULL;
		return rc;
	}
	pthread_mutex_init(&q->lock, NULL);
	return 0;
}

void request_queue_fini(struct request_queue *q)
{
	if (q->wake_fd >= 0) {
		close(q->wake_fd);
		pthread_mutex_destroy(&q->lock);
	}
	q->wake_fd = -1;
	free(q->queued);
	q->queued = NULL;
	stripe_fifo_free(&q->fetch);
	stripe_fifo_free(&q->written);
	free(q->subscribers);
	q->subscribers = NULL;
}

void request_queue_wake(struct request_queue *q)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is saturated: the worker will wake anyway. */
	if (write(q->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("fetch: cannot wake the worker: %s", strerror(errno));
}

void request_queue_stop(struct request_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->stopped = true;
	pthread_mutex_unlock(&q->lock);
	request_queue_wake(q);
}

bool request_queue_stopped(struct request_queue *q)
{
	pthread_mutex_lock(&q->lock);
	bool stopped = q->stopped;
	pthread_mutex_unlock(&q->lock);
	return stopped;
}

int request_queue_push(struct request_queue *q, uint64_t stripe, unsigned kind)
{
	struct stripe_fifo *fifo = kind == REQUEST_FETCH ? &q->fetch : &q->written;
	int rc = 0;
	bool wake = false;
	pthread_mutex_lock(&q->lock);
	if (q->stopped) {
		rc = -ESHUTDOWN;
	} else if (stripe >= q->stripes) {
		rc = -EINVAL;
	} else if (!(q->queued[stripe] & kind)) {
		rc = stripe_fifo_push(fifo, stripe);
		if (rc == 0) {
			q->queued[stripe] |= (uint8_t)kind;
			wake = q->fetch.count + q->written.count == 1;
		}
	}
	pthread_mutex_unlock(&q->lock);
	if (wake)
		request_queue_wake(q);
	return rc;
}

/* Called with the lock held. */
static void move_all(struct request_queue *q, struct stripe_fifo *fetch,
		     struct stripe_fifo *written)
{
	for (size_t i = 0; i < q->fetch.count; i++)
		q->queued[stripe_fifo_peek(&q->fetch, i)] &= (uint8_t)~REQUEST_FETCH;
	for (size_t i = 0; i < q->written.count; i++)
		q->queued[stripe_fifo_peek(&q->written, i)] &= (uint8_t)~REQUEST_WRITTEN;
	/* Swapping keeps both FIFOs' allocations alive for reuse. */
	struct stripe_fifo tmp = *fetch;
	*fetch = q->fetch;
	q->fetch = tmp;
	tmp = *written;
	*written = q->written;
	q->written = tmp;
}

void request_queue_take(struct request_queue *q, struct stripe_fifo *fetch,
			struct stripe_fifo *written)
{
	pthread_mutex_lock(&q->lock);
	move_all(q, fetch, written);
	pthread_mutex_unlock(&q->lock);
}

void request_queue_close(struct request_queue *q, struct stripe_fifo *fetch,
			 struct stripe_fifo *written)
{
	pthread_mutex_lock(&q->lock);
	q->stopped = true;
	move_all(q, fetch, written);
	pthread_mutex_unlock(&q->lock);
}

int request_queue_subscribe(struct request_queue *q, int fd)
{
	if (fd < 0)
		return -EBADF;
	int rc = 0;
	pthread_mutex_lock(&q->lock);
	if (q->subscriber_count == q->subscriber_capacity) {
		size_t capacity = q->subscriber_capacity ? q->subscriber_capacity * 2 : 8;
		int *fds = realloc(q->subscribers, capacity * sizeof(int));
		if (fds) {
			q->subscribers = fds;
			q->subscriber_capacity = capacity;
		} else {
			rc = -ENOMEM;
		}
	}
	if (rc == 0)
		q->subscribers[q->subscriber_count++] = fd;
	pthread_mutex_unlock(&q->lock);
	return rc;
}

void request_queue_unsubscribe(struct request_queue *q, int fd)
{
	pthread_mutex_lock(&q->lock);
	for (size_t i = 0; i < q->subscriber_count; i++) {
		if (q->subscribers[i] == fd) {
			q->subscribers[i] = q->subscribers[--q->subscriber_count];
			break;
		}
	}
	pthread_mutex_unlock(&q->lock);
}

void request_queue_notify(struct request_queue *q)
{
	uint64_t one = 1;
	/* Under the lock, so a subscriber that has unsubscribed may close its
	 * fd without it being written afterwards. */
	pthread_mutex_lock(&q->lock);
	for (size_t i = 0; i < q->subscriber_count; i++)
		if (write(q->subscribers[i], &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("fetch: cannot notify subscriber fd %d: %s", q->subscribers[i],
				 strerror(errno));
	pthread_mutex_unlock(&q->lock);
}

/* What the files of a queue worker share: queue_worker.c (the API the
 * control thread calls), queue_worker_thread.c (the worker's loop: settings
 * handshake, polling and sleeping) and queue_worker_io.c (request slots and
 * one processing round).
 *
 * The control thread never touches the worker's data-path state. It writes
 * the settings it wants into `want` under `lock`, bumps `request_gen`, wakes
 * the worker through `control_fd` and waits on `cond` until the worker has
 * applied them (`applied_gen`). The worker looks at `request_gen` with one
 * atomic load per loop iteration, so the I/O path takes no lock. A stop is
 * acknowledged only once nothing is in flight, which is what makes
 * GET_VRING_BASE safe. */
#ifndef UBIBLK_VHOST_QUEUE_WORKER_INTERNAL_H
#define UBIBLK_VHOST_QUEUE_WORKER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhost/blk_request.h"
#include "vhost/eventfd_io.h"
#include "vhost/poll_window.h"
#include "vhost/queue_worker.h"
#include "vhost/virtqueue.h"

/* A request from pop until its used entry is written; its index in the
 * slot array is its bdev operation id. */
struct request_slot {
	struct blk_request req;
	/* The table the request was parsed with, held while it is in flight. */
	struct guest_memory *mem;
	void *bounce; /* while the request runs, when it is bounced */
	size_t bounce_size;
	struct iovec bounce_iov;
	bool bounced;
	bool in_flight;
};

struct unreturned_entry {
	uint16_t head;
	uint32_t len;
};

/* What the control thread asks for; under `lock`. The fds and the memory
 * reference belong to the control side. */
struct worker_settings {
	bool run;
	bool exit;
	bool enabled;
	bool event_idx;
	int kick_fd;
	int call_fd;
	struct guest_memory *mem;
	uint32_t num;
	bool addr_set;
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;
	uint16_t next_avail;
};

struct queue_worker {
	struct queue_worker_config cfg;
	char device_id[VIRTIO_BLK_ID_BYTES + 1];
	pthread_t thread;
	int control_fd;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct worker_settings want;
	uint64_t request_gen; /* written under lock, read atomically by the worker */
	uint64_t applied_gen;
	bool init_done;
	int init_result;
	int start_result;
	uint16_t stopped_next_avail;
	bool started; /* the control thread's view */

	/* Worker thread only. */
	uint64_t seen_gen;
	struct worker_settings have;
	struct guest_memory *mem; /* the worker's own reference */
	struct bdev_channel *ch;
	int completion_fd;
	struct virtqueue vq;
	bool running;
	bool stopping;
	bool exiting;
	bool ring_mapped;
	bool used_pending; /* used entries pushed but not yet published */
	bool submit_needed;
	/* The worker loop's latest clock read (after the previous round, or on
	 * waking): the I/O tracker's submission time for the requests the next
	 * round pops, so submissions cost no clock read of their own. 0 for a
	 * threadless worker, whose rounds read the clock themselves. */
	uint64_t round_ns;
	bool kick_failed; /* the kick fd reported an error: not polled until replaced */
	struct request_slot *slots;
	uint32_t *free_list; /* indices of free slots, a stack */
	uint32_t nslots;
	uint32_t free_count;
	uint32_t in_flight;
	struct blk_request_limits limits;
	/* Bounce buffers (queue_worker_io.c): requests hold at most
	 * bounce_budget bytes at once, or one larger request alone; popping
	 * pauses (bounce_stalled) until enough is released. Buffers of
	 * pool_bytes are kept in a small pool for reuse. */
	size_t pool_bytes;
	size_t bounce_budget;
	size_t bounce_in_use;
	/* queue_worker_get_bounce_stats() reads these from another thread. */
	size_t bounce_peak;    /* highest bounce_in_use (atomic) */
	uint64_t bounce_waits; /* pauses for the budget (atomic) */
	bool bounce_stalled;
	void **bounce_pool;
	uint32_t pool_count;
	uint32_t pool_cap;
	/* Requests that completed while the rings were not mapped: returned
	 * on the used ring once they are again (at most one per slot). */
	struct unreturned_entry *unreturned;
	uint32_t unreturned_count;
	/* The call fd is written through this, never blocking the worker. */
	struct eventfd_io call_io;
	uint32_t alignment;
	struct poll_window poll; /* how long to busy-poll before sleeping */
	uint32_t bad_requests_logged;
};

/* queue_worker_io.c */
/* Sizes the limits and allocates the slots (the channel must exist). */
int queue_worker_io_init(struct queue_worker *qw);
void queue_worker_io_fini(struct queue_worker *qw);
/* Whether new heads are popped: started, enabled, rings mapped, not broken. */
bool queue_worker_accepting(const struct queue_worker *qw);
/* Pops everything available, submits it at once, reaps completions,
 * returns used entries and signals the guest once. True when anything
 * happened. */
bool queue_worker_run_round(struct queue_worker *qw);
/* Signals the call fd, if any; never blocks (eventfd_io.h). */
void queue_worker_signal_guest(struct queue_worker *qw);
/* After the rings were mapped again: returns the requests that completed
 * meanwhile. */
void queue_worker_return_unreturned(struct queue_worker *qw);
/* The queue stops with the rings unmapped: those requests can never be
 * returned (logged). */
void queue_worker_drop_unreturned(struct queue_worker *qw);

/* queue_worker_thread.c */
void *queue_worker_thread_main(void *arg);
/* The worker's set-up and tear-down, on whichever thread runs the worker:
 * its own, or the control thread for a threadless worker. */
int queue_worker_thread_init(struct queue_worker *qw);
void queue_worker_thread_fini(struct queue_worker *qw);
/* A threadless worker (queue_worker_config.threadless): applies the pending
 * settings on the calling thread, lock held, and acknowledges them, a stop
 * included. */
void queue_worker_settle_threadless(struct queue_worker *qw);

#endif

/* The fetch worker's parts and how they talk to each other.
 *
 *  request_queue.c  what I/O threads hand over (fetch / written requests,
 *                   deduplicated per stripe), the wake-up eventfd, the
 *                   subscribers to notify; the only state behind a lock
 *  fetcher.c        stripe copies: source read -> disk write -> disk flush,
 *                   FETCH_MAX_CONCURRENT at a time, retries, autofetch walk
 *  meta_flusher.c   header bits made durable: one 512-byte metadata sector
 *                   write + flush per header group, serialized per sector,
 *                   coalescing every bit requested meanwhile
 *  worker.c         start/stop, the handshake with the starting thread, the
 *                   outcome of each metadata update (shared state, stats)
 *  worker_loop.c    the thread: run everything until nothing moves, then
 *                   sleep in poll(2)
 *
 * Everything but the request queue and the stats is touched only by the
 * worker thread (and by start/stop while that thread does not run). */
#ifndef UBIBLK_FETCH_WORKER_INTERNAL_H
#define UBIBLK_FETCH_WORKER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "fetch/fetch.h"
#include "fetch/source_internal.h"
#include "fetch/stripe_fifo.h"

/* Channel depth for the disk and metadata channels: each slot has at most
 * one operation in flight, so this leaves slack. */
#define WORKER_CHANNEL_DEPTH (2u * FETCH_MAX_CONCURRENT)
#define FLUSHER_SLOTS	     16u
#define FLUSHER_ALIGNMENT    4096u
#define METADATA_MAX_RETRIES 3u

/* ---- request queue ---- */

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
/* Refuses new requests from now on; returns what was still queued. */
void request_queue_close(struct request_queue *q, struct stripe_fifo *fetch,
			 struct stripe_fifo *written);
void request_queue_wake(struct request_queue *q);
/* Reads the eventfd so it stops being readable. */
void request_queue_clear_wake(struct request_queue *q);
int request_queue_subscribe(struct request_queue *q, int fd);
void request_queue_unsubscribe(struct request_queue *q, int fd);
void request_queue_notify(struct request_queue *q);

/* ---- fetcher ---- */

/* Per-stripe fetcher state, low bits; the attempt number sits above. */
enum fetch_stripe_phase {
	PHASE_IDLE = 0,	      /* no work: shared state says the rest */
	PHASE_QUEUED = 1,     /* waiting for a slot */
	PHASE_COPYING = 2,    /* in a slot: source read, disk write, disk flush */
	PHASE_PERSISTING = 3, /* data durable, FETCHED bit being written */
};
#define PHASE_MASK    0x0fu
#define RETRIES_SHIFT 4u

enum fetch_slot_stage { SLOT_FREE = 0, SLOT_READING, SLOT_WRITING, SLOT_FLUSHING };

struct fetch_slot {
	enum fetch_slot_stage stage;
	uint64_t stripe;
	uint64_t started_ns;
	void *buf;	  /* stripe_sectors * 512 bytes */
	struct iovec iov; /* bdev reads it until the completion: not on a stack */
};

struct fetcher {
	struct stripe_source *source; /* NULL once every stripe is fetched */
	struct bdev *disk_dev;
	struct bdev_channel *disk;
	uint64_t disk_sectors;
	uint32_t stripe_sectors;
	uint64_t stripes;	 /* stripes covering the disk */
	uint64_t source_sectors; /* kept after the source is dropped */
	uint8_t *phase;		 /* per stripe */
	struct stripe_fifo queue;
	bool autofetch;
	uint64_t autofetch_next;
	uint64_t autofetch_end;
	/* Stripes with a source whose data is not on the disk yet; the source
	 * is closed when this reaches 0 and nothing is in flight. */
	uint64_t unfetched;
	struct fetch_slot slots[FETCH_MAX_CONCURRENT];
	bool disk_submit_failed;
};

struct fetch_worker;

/* ---- metadata flusher ---- */

enum flush_slot_stage { FLUSH_FREE = 0, FLUSH_WRITING, FLUSH_SYNCING };

struct flush_slot {
	enum flush_slot_stage stage;
	uint64_t group;	   /* header group = metadata sector - 1 */
	uint32_t attempts; /* failed attempts of this update */
	uint8_t *buf;	   /* the sector being written: what becomes durable */
	struct iovec iov;  /* bdev reads it until the completion: not on a stack */
};

#define GROUP_QUEUED	0x01u
#define GROUP_IN_FLIGHT 0x02u

struct meta_flusher {
	struct bdev *dev;
	struct bdev_channel *ch;
	struct metadata durable; /* private copy: what the file holds */
	uint64_t stripes;
	uint8_t *wanted; /* per stripe: bits requested, not durable yet */
	uint64_t groups;
	uint8_t *group_flags;
	struct stripe_fifo dirty; /* groups with wanted bits, in request order */
	struct flush_slot slots[FLUSHER_SLOTS];
	bool submit_failed;
};

/* ---- the worker ---- */

struct fetch_worker {
	struct request_queue requests;
	struct stripe_state *state;
	struct fetcher fetcher;
	struct meta_flusher flusher;
	struct fetch_stats stats; /* written by the worker, read with atomics */

	pthread_t thread;
	bool thread_running;
	bool has_source;    /* atomic: for tests */
	bool changed;	    /* shared state changed since subscribers were notified */
	uint64_t abandoned; /* stripes failed by the shutdown */

	/* start-up handshake */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	bool start_done;
	int start_result;
	char start_error[FETCH_ERROR_MAX];
};

/* fetcher.c */
int fetcher_init(struct fetcher *f, const struct fetch_worker_options *opts, uint32_t alignment,
		 const struct stripe_state *state);
void fetcher_fini(struct fetcher *f);
int fetcher_open(struct fetcher *f);
void fetcher_close(struct fetcher *f);
void fetcher_request(struct fetch_worker *w, uint64_t stripe);
/* One step each; true when anything moved. */
bool fetcher_start(struct fetch_worker *w);
bool fetcher_poll(struct fetch_worker *w);
/* The FETCHED bit of a stripe is durable / could not be made durable. */
void fetcher_persisted(struct fetch_worker *w, uint64_t stripe);
void fetcher_persist_failed(struct fetch_worker *w, uint64_t stripe);
/* Close the source once nothing is left to fetch. */
void fetcher_drop_source_if_done(struct fetch_worker *w);
bool fetcher_busy(const struct fetcher *f);
void fetcher_fail_outstanding(struct fetch_worker *w);

/* meta_flusher.c */
int flusher_init(struct meta_flusher *fl, struct bdev *dev, const struct metadata *loaded,
		 uint64_t stripes);
void flusher_fini(struct meta_flusher *fl);
int flusher_open(struct meta_flusher *fl);
void flusher_close(struct meta_flusher *fl);
bool flusher_has_bit(const struct meta_flusher *fl, uint64_t stripe, uint8_t bit);
/* Asks for `bit` of `stripe` to be made durable; worker_header_durable() or
 * worker_header_failed() reports the outcome, possibly at once. */
void flusher_request(struct fetch_worker *w, uint64_t stripe, uint8_t bit);
bool flusher_start(struct fetch_worker *w);
bool flusher_poll(struct fetch_worker *w);
bool flusher_busy(const struct meta_flusher *fl);
void flusher_fail_outstanding(struct fetch_worker *w);

/* worker.c */
/* The stripe has a source (in the metadata file) and is not fetched. */
bool worker_needs_fetch(const struct fetch_worker *w, uint64_t stripe);
/* Outcomes of header updates. */
void worker_header_durable(struct fetch_worker *w, uint64_t stripe, uint8_t bits);
void worker_header_failed(struct fetch_worker *w, uint64_t stripe, uint8_t bits);
/* Shutdown: the stripe was still being worked on; it fails from now on. */
void worker_abandon(struct fetch_worker *w, uint64_t stripe);
/* Stats, updated by the worker thread only. */
void worker_stat_add(uint64_t *counter, uint64_t value);
void worker_stat_max(uint64_t *counter, uint64_t value);

/* worker_loop.c */
void *worker_thread_main(void *arg);

#endif

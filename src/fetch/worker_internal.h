/* The fetch worker's parts and how they connect.
 *
 *   worker.c ──────────> worker_loop.c
 *      │                  │   │   │
 *      │   ┌──────────────┘   │   └──────────────┐
 *      v   v                  v                  v
 *   request_queue.c       fetcher.c         meta_flusher.c
 *                          │     │               │
 *                          v     └─> io_slot.c <─┘
 *                     source*.c
 *
 * Arrows point from caller to callee, never back. Each part owns its state
 * and takes only what it needs:
 *
 *  request_queue.c  what I/O threads hand over (fetch / written requests,
 *                   deduplicated per stripe), the wake-up eventfd, the
 *                   subscribers to notify; the only state behind a lock
 *  fetcher.c        stripe copies: source read -> disk write -> disk flush,
 *                   FETCH_MAX_CONCURRENT at a time, retries, autofetch walk;
 *                   reads the shared stripe state, never writes it
 *  meta_flusher.c   header bits made durable: one 512-byte metadata sector
 *                   write + flush per header group, serialized per sector,
 *                   coalescing every bit requested meanwhile
 *  io_slot.c        the write -> flush -> report slots both of them run on
 *  worker_loop.c    the thread, and the one place the parts meet: requests
 *                   go to the fetcher and the flusher, their outcomes
 *                   (outcome.h) to the flusher, the shared stripe state and
 *                   the fetcher's bookkeeping; then sleep in poll(2)
 *  worker.c         start/stop, the handshake with the starting thread, the
 *                   calls I/O threads make, the stats
 *
 * Everything but the request queue and the stats is touched only by the
 * worker thread (and by start/stop while that thread does not run). */
#ifndef UBIBLK_FETCH_WORKER_INTERNAL_H
#define UBIBLK_FETCH_WORKER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"
#include "fetch/fetch.h"
#include "fetch/fetcher.h"
#include "fetch/meta_flusher.h"
#include "fetch/outcome.h"
#include "fetch/request_queue.h"

/* The most outcomes one call of a part can report: every flusher slot
 * finishing a whole header group, or every fetcher slot finishing. */
#define OUTCOMES_MAX (FLUSHER_SLOTS * META_HEADERS_PER_SECTOR + FETCH_MAX_CONCURRENT)

struct fetch_worker {
	struct request_queue requests;
	struct stripe_state *state; /* written here only, by worker_loop.c */
	struct fetcher fetcher;
	struct meta_flusher flusher;
	struct outcome_list outcomes; /* drained after every call of a part */

	pthread_t thread;
	bool thread_running;
	bool changed;	    /* shared state changed since subscribers were notified */
	uint64_t abandoned; /* stripes failed by the shutdown */

	/* start-up handshake */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	bool start_done;
	int start_result;
	struct error start_error;
};

/* worker_loop.c */
void *worker_thread_main(void *arg);

#endif

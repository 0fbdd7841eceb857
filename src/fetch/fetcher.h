/* The fetcher: copies stripes from the source to the disk, up to
 * FETCH_MAX_CONCURRENT at a time, with retries, and walks the disk when
 * autofetch is on. It owns the source, the disk channel, one stripe buffer
 * per slot and a phase per stripe; it reads the shared stripe state but
 * never writes it, and knows nothing of the metadata file.
 *
 * Its work ends with an outcome (outcome.h) for the worker loop:
 * OUTCOME_COPIED when a stripe's data is written and flushed (the loop then
 * wants its FETCHED bit; the stripe stays PERSISTING here until the loop
 * says how that went), OUTCOME_FETCH_FAILED when it gave up on a stripe.
 * Worker thread only, except init/fini and the stats. */
#ifndef UBIBLK_FETCH_FETCHER_H
#define UBIBLK_FETCH_FETCHER_H

#include <stdbool.h>
#include <stdint.h>

#include "fetch/fetch.h"
#include "fetch/io_slot.h"
#include "fetch/outcome.h"
#include "fetch/source_internal.h"
#include "fetch/stripe_fifo.h"
#include "meta/meta.h"

/* Per-stripe fetcher state, low bits; the attempt number sits above. */
enum fetch_stripe_phase {
	PHASE_IDLE = 0,	      /* no work: shared state says the rest */
	PHASE_QUEUED = 1,     /* waiting for a slot */
	PHASE_COPYING = 2,    /* in a slot: source read, disk write, disk flush */
	PHASE_PERSISTING = 3, /* data durable, FETCHED bit being written */
};

struct fetcher_counters {
	uint64_t stripes_fetched;
	uint64_t bytes_fetched;
	uint64_t fetch_failures;
	uint64_t stripes_failed;
	uint64_t fetch_latency_ns_total;
	uint64_t fetch_latency_ns_max;
	uint64_t fetch_latency_buckets[FETCH_DURATION_BUCKETS + 1];
	bool source_connected; /* atomic */
};

struct fetcher {
	struct stripe_source *source;		   /* NULL once every stripe is fetched */
	const struct stripe_state *state;	   /* read only: the worker loop writes it */
	uint64_t *has_source;			   /* bitmap: HAS_SOURCE in the metadata file */
	struct io_slots disk;			   /* a slot's key is its stripe */
	uint64_t started_ns[FETCH_MAX_CONCURRENT]; /* per slot: source read start */
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
	struct fetcher_counters counters;
};

/* Stripes the fetcher has to copy: HAS_SOURCE in the file, not fetched. */
uint64_t fetcher_count_unfetched(const struct stripe_state *state, const struct metadata *loaded);
/* `source` is owned from now on, on failure too; when no stripe is left to
 * fetch it is closed at once. `loaded`: the metadata file's headers (only
 * HAS_SOURCE is read; it never changes). 0 or -ENOMEM. */
int fetcher_init(struct fetcher *f, struct stripe_source *source, struct bdev *disk,
		 const struct stripe_state *state, const struct metadata *loaded, bool autofetch,
		 uint32_t alignment);
void fetcher_fini(struct fetcher *f);
/* The disk channel and the source's resources, on the worker thread. After
 * a failure fetcher_close() is still needed. */
int fetcher_open(struct fetcher *f);
/* Waits for the reads and writes still using slot buffers. */
void fetcher_close(struct fetcher *f);

/* The stripe has a source (in the metadata file) and is not fetched. */
bool fetcher_needs_fetch(const struct fetcher *f, uint64_t stripe);
/* Queues a stripe that needs fetching and is not being worked on. 0, or
 * -ENOMEM (logged): the caller fails the stripe. */
int fetcher_request(struct fetcher *f, uint64_t stripe);
/* One step each; true when anything moved. */
bool fetcher_start(struct fetcher *f, struct outcome_list *out);
bool fetcher_poll(struct fetcher *f, struct outcome_list *out);

/* What became of an OUTCOME_COPIED stripe's FETCHED bit: durable (call
 * before the shared state says Fetched: it counts the stripe as fetched),
 * or not. */
void fetcher_fetched(struct fetcher *f, uint64_t stripe);
void fetcher_persist_failed(struct fetcher *f, uint64_t stripe);
/* A Fetched stripe was marked Failed (after the shared state says so): its
 * data counts as missing again. */
void fetcher_lost(struct fetcher *f, uint64_t stripe);
/* Closes the source once nothing is left to fetch; true when it did. */
bool fetcher_drop_source_if_done(struct fetcher *f);
/* Shutdown, after fetcher_close(): forgets the stripe's work; true when
 * there was some. */
bool fetcher_forget(struct fetcher *f, uint64_t stripe);

/* From any thread: fills the fetch_* / stripes_* / bytes_* / source
 * fields. */
void fetcher_stats(const struct fetcher *f, struct fetch_stats *out);
/* For the worker's sleep: fds to wait on (at most 2), whether a submit must
 * be retried soon, whether operations are in flight. */
int fetcher_wait_fds(const struct fetcher *f, int fds[2]);
bool fetcher_submit_pending(const struct fetcher *f);
bool fetcher_in_flight(const struct fetcher *f);

#endif

/* The background fetch worker: one thread with its own io_uring channels that
 * owns fetching stripes from the source into the disk and every metadata
 * update. I/O threads (the lazy device's channels) hand it requests through a
 * lock-protected queue plus an eventfd; it sleeps when idle.
 *
 * Crash-safe order: a fetched stripe's data is written and flushed before its
 * FETCHED bit is written and flushed; only then does the shared stripe state
 * say Fetched. A WRITTEN bit is durable before the shared state says Written
 * (and so before the lazy device issues the guest write). A fetch is tried 4
 * times (3 retries); a metadata update is retried too; after that the stripe
 * is marked Failed so waiting requests fail instead of waiting forever.
 *
 * Whenever it changes the shared state it writes 1 to every subscribed
 * eventfd, so sleeping I/O threads re-check their queued requests. */
#ifndef UBIBLK_FETCH_H
#define UBIBLK_FETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "common/common.h"
#include "meta/meta.h"

#define FETCH_MAX_CONCURRENT 16u
#define FETCH_MAX_RETRIES    3u

/* ---- stripe sources ---- */

struct stripe_source;

/* A raw image read through `image` (plaintext, never encrypted). The source
 * borrows `image`: the caller keeps it open until the worker has stopped (the
 * lazy device may read the same device). The worker opens its own channel on
 * it and closes that channel, so the file, once every stripe is fetched.
 * Stripe i reads min(stripe, image end - stripe start) sectors; the rest of
 * the buffer is zeroed. stripe_sectors: a power of two. */
int stripe_source_raw(struct bdev *image, uint32_t stripe_sectors, struct stripe_source **out);
/* No source: zero sectors. */
int stripe_source_none(uint32_t stripe_sectors, struct stripe_source **out);
uint64_t stripe_source_sector_count(const struct stripe_source *src);
/* Whether stripe i has data in the source (init-metadata sets HAS_SOURCE). */
bool stripe_source_has_stripe(const struct stripe_source *src, uint64_t stripe);
void stripe_source_destroy(struct stripe_source *src);

/* ---- driving a source from one thread ----
 * The fetch worker drives its source this way, and so may a tool that reads
 * stripes itself (the archive tool). Life cycle: built on any thread
 * (stripe_source_raw, ...); then ONE thread calls source_open() to create
 * the per-thread resources (an I/O channel, connections), drives
 * request/poll, and calls source_close() before stripe_source_destroy(). A
 * source that was never opened may be destroyed directly. */

struct source_completion {
	uint64_t stripe;
	int result; /* 0 or negative errno */
};

int source_open(struct stripe_source *src);
/* Waits until the source no longer touches any buffer, releases what
 * source_open() created; completions still owed are dropped. */
void source_close(struct stripe_source *src);
/* Start reading stripe `stripe` into buf (stripe_sectors * 512 bytes,
 * aligned for O_DIRECT). 0: exactly one completion for it will come from
 * source_poll(), and buf stays the source's until then; a negative errno
 * (-EBUSY: too many requests in flight, try again after a completion):
 * none will. Data past the source's end reads as zeroes. */
int source_request(struct stripe_source *src, uint64_t stripe, void *buf);
/* Non-blocking: up to max completions into out; returns how many. */
int source_poll(struct stripe_source *src, struct source_completion *out, int max);
/* True while requests are outstanding or completions unpolled. */
bool source_busy(const struct stripe_source *src);
/* Readable when completions may be waiting (the driver sleeps on it); -1
 * when completions only ever appear synchronously (then source_busy() says
 * whether to poll again). */
int source_completion_fd(const struct stripe_source *src);

/* ---- the worker ---- */

struct fetch_worker_options {
	struct bdev *disk;     /* where fetched stripes go (the crypt layer when encrypted) */
	struct bdev *metadata; /* the metadata file device */
	struct stripe_source *source; /* owned by the worker from now on (freed on failure too) */
	struct stripe_state *state;   /* borrowed; must outlive the worker */
	bool autofetch;
	uint32_t alignment; /* stripe buffer alignment; 0: the disk's (at least 4096) */
};

/* Finite buckets of the fetch duration histogram: upper bounds 8 us << k,
 * k = 0..23 (8 us to 67.108864 s; common.h duration_bucket), plus one for
 * longer fetches. */
#define FETCH_DURATION_BUCKETS 24

struct fetch_stats {
	uint64_t stripes_fetched;
	uint64_t bytes_fetched;
	uint64_t fetch_failures; /* failed attempts, retries included */
	/* Stripes given up on (marked Failed, retries spent), so a monitor sees
	 * them without reading the log. */
	uint64_t stripes_failed;
	uint64_t fetch_latency_ns_total;
	uint64_t fetch_latency_ns_max;
	/* The same latencies by duration: [k] counts those in bucket k alone
	 * (not cumulative); their sum is the number of stripes copied, and
	 * fetch_latency_ns_total is their sum of durations. */
	uint64_t fetch_latency_buckets[FETCH_DURATION_BUCKETS + 1];
	uint64_t metadata_writes;   /* metadata sector writes issued, retries included */
	uint64_t metadata_failures; /* failed metadata writes or flushes, retries included */
	/* False once every stripe is fetched and the source is closed (or when
	 * nothing was left to fetch at start-up). */
	bool source_connected;
};

struct fetch_worker;

/* Builds the channels and buffers, checks sizes (source fits the disk and the
 * metadata), starts the thread, and returns only once it is running; a
 * failure is returned (with a message) instead of being logged and ignored.
 * The metadata file is loaded again into the worker's private copy, which is
 * what it rewrites. When no stripe is left to fetch the source is closed at
 * once and not checked against the disk: a finished disk must start even
 * when its source is gone. The
 * devices are borrowed and must outlive the worker. */
int fetch_worker_start(const struct fetch_worker_options *opts, struct fetch_worker **out,
		       struct error *err);
/* Stops the thread (in-flight work is abandoned safely: nothing is marked
 * fetched that is not durable) and frees everything. */
void fetch_worker_stop(struct fetch_worker *w);
/* Stops the thread but keeps the worker, so requests made afterwards return
 * -ESHUTDOWN instead of touching freed memory (tear-down while front ends
 * still run). Stripes that were requested but not done are marked Failed and
 * subscribers notified, so no I/O waits for a worker that is gone.
 * fetch_worker_stop() is still needed to free it; calling both is fine. */
void fetch_worker_shutdown(struct fetch_worker *w);

/* From any thread. Ask for a stripe to be fetched / marked WRITTEN. Return
 * 0, -ESHUTDOWN once the worker has stopped, -EINVAL for a stripe beyond the
 * disk. Asking for a stripe that is already fetched (or has no source) /
 * already written is a no-op; repeated requests are coalesced. */
int fetch_worker_request_fetch(struct fetch_worker *w, uint64_t stripe);
int fetch_worker_request_written(struct fetch_worker *w, uint64_t stripe);
/* Register an eventfd to be written whenever the shared state changes. */
int fetch_worker_subscribe(struct fetch_worker *w, int eventfd);
void fetch_worker_unsubscribe(struct fetch_worker *w, int eventfd);

/* A consistent-enough snapshot (each counter read atomically). Fetch latency
 * is per successful attempt: source read start to the stripe's data flushed
 * on the disk. stripes_fetched / bytes_fetched count stripes whose FETCHED
 * bit became durable; bytes are the source's data (a partial last stripe
 * counts its real size). */
void fetch_worker_stats(const struct fetch_worker *w, struct fetch_stats *out);

#endif

/* Per-queue I/O tracking: which request each slot of a queue holds right
 * now, cumulative counters of what the queue has served, how long its
 * requests took (a histogram per kind) and the errors it returned. The RPC
 * server's `queues`, `stats` and `metrics` commands report them.
 *
 * Ownership: whoever builds the device stack creates one tracker per queue
 * and destroys it after both the queue thread and every reader are gone.
 * Front ends only receive a pointer, which may be NULL (not tracked).
 *
 * Threads: exactly one thread, the queue's own, calls io_tracker_begin and
 * io_tracker_end on a tracker; it takes no lock and makes no locked
 * instruction, so tracking costs the data path a few plain stores. Any
 * number of other threads may read it at the same time (slot count,
 * snapshot, counters); they never block the queue thread.
 *
 * A slot is a front end's request index (a descriptor head, a ublk tag):
 * begin marks it busy with one request, end frees it. Every begin is
 * followed by exactly one end for the same slot before the slot is begun
 * again. Begin and end take the time (now_ns(), the monotonic clock) from
 * the caller, who reads it once for a whole batch of submissions or of
 * completions: a clock read costs as much as the rest of the tracking. The
 * request's duration, from begin to end, goes into the histogram of its
 * kind. */
#ifndef UBIBLK_IO_TRACKER_H
#define UBIBLK_IO_TRACKER_H

#include <stddef.h>
#include <stdint.h>

enum io_kind { IO_KIND_NONE = 0, IO_KIND_READ, IO_KIND_WRITE, IO_KIND_FLUSH };

/* Why a request came back to the guest with an error (docs/metrics.md). */
enum io_error_kind {
	IO_ERROR_IO = 0,	    /* the device failed it (or no memory to run it) */
	IO_ERROR_FAILED_STRIPE = 1, /* it touched a stripe the fetch worker gave up on */
	IO_ERROR_BAD_REQUEST = 2,   /* malformed or unsupported: refused before the device */
};
#define IO_ERROR_KINDS 3

/* Finite buckets of the request duration histograms: upper bounds 8 us
 * << k, k = 0..17 (8 us to 1.048576 s; common.h duration_bucket), plus one
 * for longer requests. */
#define IO_TRACKER_BUCKETS 18

struct io_tracker; /* one per queue: `slots` in-flight entries plus counters */

/* NULL when out of memory. `slots` may be 0 (only counters). */
struct io_tracker *io_tracker_create(uint32_t slots);
void io_tracker_destroy(struct io_tracker *t);

/* ---- the queue thread ---- */

/* Record that `slot` holds a request (sector/count ignored for flush), and
 * count it in the cumulative stats. Slots >= the tracker size are counted but
 * neither shown nor timed. `t` may be NULL (not tracked). `now` is now_ns()
 * at submission (of the batch it belongs to). */
void io_tracker_begin(struct io_tracker *t, uint32_t slot, enum io_kind kind, uint64_t sector,
		      uint32_t count, uint64_t now);
/* The request in `slot` completed at `now` (now_ns(), read once for the
 * batch of completions): frees the slot and records its duration. A slot
 * not begun is left alone. */
void io_tracker_end(struct io_tracker *t, uint32_t slot, uint64_t now);
/* Count one request returned to the guest with an error. Called by the
 * queue thread for any request, tracked kind or not (discard, get-id, a
 * request refused by parsing). `t` may be NULL. */
void io_tracker_count_error(struct io_tracker *t, enum io_error_kind kind);

/* ---- readers: any thread, concurrently with the queue thread ----
 * With a NULL tracker the snapshot is empty and the counters are zero. */
struct io_tracker_entry {
	uint32_t slot;
	enum io_kind kind;
	uint64_t sector; /* 0 for a flush */
	uint32_t count;	 /* sectors; 0 for a flush */
};

struct io_tracker_counters {
	uint64_t bytes_read; /* sectors x 512, counted at submission */
	uint64_t bytes_written;
	uint64_t read_ops;
	uint64_t write_ops;
	uint64_t flush_ops;
};

/* Durations of the completed requests of one kind. buckets[k] counts those
 * in bucket k alone (not cumulative); buckets[IO_TRACKER_BUCKETS] those
 * over the last bound. The count is the sum of the buckets. */
struct io_tracker_histogram {
	uint64_t buckets[IO_TRACKER_BUCKETS + 1];
	uint64_t sum_ns;
};

struct io_tracker_metrics {
	/* Requests begun and not yet ended (tracked slots only). */
	uint32_t in_flight;
	/* Indexed by enum io_kind; [IO_KIND_NONE] stays zero. */
	struct io_tracker_histogram duration[IO_KIND_FLUSH + 1];
	uint64_t errors[IO_ERROR_KINDS]; /* indexed by enum io_error_kind */
};

uint32_t io_tracker_slot_count(const struct io_tracker *t);
/* The occupied slots in slot order, at most `max` of them; returns how many
 * were written. Each entry is one request as it was submitted (never a mix
 * of two); the set as a whole is not one instant. */
size_t io_tracker_snapshot(const struct io_tracker *t, struct io_tracker_entry *out, size_t max);
/* Each counter is exact at some moment; the five are not read at one instant. */
void io_tracker_read_counters(const struct io_tracker *t, struct io_tracker_counters *out);
/* Each number is exact at some moment, as with the counters; a histogram's
 * count and sum may be a few requests apart. */
void io_tracker_read_metrics(const struct io_tracker *t, struct io_tracker_metrics *out);

#endif

/* Per-queue I/O tracking: which request each slot of a queue holds right
 * now, and cumulative counters of what the queue has served. The RPC
 * server's `queues` and `stats` commands report them.
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
 * again. */
#ifndef UBIBLK_IO_TRACKER_H
#define UBIBLK_IO_TRACKER_H

#include <stddef.h>
#include <stdint.h>

enum io_kind { IO_KIND_NONE = 0, IO_KIND_READ, IO_KIND_WRITE, IO_KIND_FLUSH };

struct io_tracker; /* one per queue: `slots` in-flight entries plus counters */

/* NULL when out of memory. `slots` may be 0 (only counters). */
struct io_tracker *io_tracker_create(uint32_t slots);
void io_tracker_destroy(struct io_tracker *t);

/* ---- the queue thread ---- */

/* Record that `slot` holds a request (sector/count ignored for flush), and
 * count it in the cumulative stats. Slots >= the tracker size are counted but
 * not shown. `t` may be NULL (not tracked). */
void io_tracker_begin(struct io_tracker *t, uint32_t slot, enum io_kind kind, uint64_t sector,
		      uint32_t count);
void io_tracker_end(struct io_tracker *t, uint32_t slot);

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

uint32_t io_tracker_slot_count(const struct io_tracker *t);
/* The occupied slots in slot order, at most `max` of them; returns how many
 * were written. Each entry is one request as it was submitted (never a mix
 * of two); the set as a whole is not one instant. */
size_t io_tracker_snapshot(const struct io_tracker *t, struct io_tracker_entry *out, size_t max);
/* Each counter is exact at some moment; the five are not read at one instant. */
void io_tracker_read_counters(const struct io_tracker *t, struct io_tracker_counters *out);

#endif

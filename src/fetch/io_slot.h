/* Slots that make a buffer durable on a device: write it, then flush the
 * device, and only then report it. Both the fetcher (a stripe's data on the
 * disk) and the metadata flusher (a header sector in the metadata file) run
 * on this; they differ only in what they put in the buffer and in what a
 * finished slot means to them.
 *
 * A slot is FREE, HELD by its owner (no I/O in flight: being filled, say by
 * a source read, or just finished), WRITING or FLUSHING. The owner acquires
 * a free slot, fills slot->buf, and calls io_slots_write(); io_slots_poll()
 * turns a finished write into the flush itself and returns the slot, HELD
 * again, once the flush is done or either step failed. The owner then
 * releases it or writes it again (a retry). Each slot has at most one
 * operation in flight, so between two of the owner's actions a slot is
 * returned at most once.
 *
 * Worker thread only (init/fini on any thread while the worker is not
 * running). */
#ifndef UBIBLK_FETCH_IO_SLOT_H
#define UBIBLK_FETCH_IO_SLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "bdev/bdev.h"

#define IO_SLOTS_POLL_BATCH 32

enum io_slot_stage { IO_SLOT_FREE = 0, IO_SLOT_HELD, IO_SLOT_WRITING, IO_SLOT_FLUSHING };

struct io_slot {
	enum io_slot_stage stage;
	uint64_t key;	   /* what the owner writes: a stripe, a header group */
	uint32_t attempts; /* failed attempts, counted by the owner */
	void *buf;
	struct iovec iov; /* bdev reads it until the completion: not on a stack */
};

struct io_slot_done {
	struct io_slot *slot;
	int result; /* 0: written and flushed; else the failed step's errno */
};

struct io_slots {
	struct bdev *dev;
	struct bdev_channel *ch; /* NULL while closed */
	const char *name;	 /* "disk": log lines say "unexpected disk completion" */
	const char *target;	 /* "the disk": "submitting to the disk failed" */
	struct io_slot *slots;
	unsigned count;
	bool added;	    /* operations queued since the last submit */
	bool submit_failed; /* the last submit failed: retry without sleeping */
};

/* `count` slots with a `buf_bytes` buffer each, aligned to `alignment`. */
int io_slots_init(struct io_slots *s, struct bdev *dev, unsigned count, size_t alignment,
		  size_t buf_bytes, const char *name, const char *target);
void io_slots_fini(struct io_slots *s);
/* The channel: created on the thread that uses it. */
int io_slots_open(struct io_slots *s, uint32_t depth);
/* Waits until the kernel is done with every buffer; completions still owed
 * are dropped (their slots stay as they are). */
void io_slots_close(struct io_slots *s);

/* A free slot, now HELD, or NULL. */
struct io_slot *io_slots_acquire(struct io_slots *s);
void io_slot_release(struct io_slot *slot);
/* The HELD slot holding `key`, or NULL. */
struct io_slot *io_slots_find_held(struct io_slots *s, uint64_t key);
unsigned io_slot_index(const struct io_slots *s, const struct io_slot *slot);
bool io_slots_all_free(const struct io_slots *s);

/* Queues the write of the first `bytes` of slot->buf at `sector`; the slot
 * is WRITING until io_slots_poll() returns it. */
void io_slots_write(struct io_slots *s, struct io_slot *slot, uint64_t sector, size_t bytes);
/* Up to `max` slots whose write + flush finished or failed, HELD again.
 * *progress is set when any completion came in (a flush queued is progress:
 * the caller must submit and poll again before it sleeps). */
int io_slots_poll(struct io_slots *s, struct io_slot_done *out, int max, bool *progress);
/* Hands queued operations to the kernel, and keeps retrying after a failed
 * submit: operations it did not take stay queued in bdev and complete
 * through bdev_poll, so nothing is failed here. */
void io_slots_submit(struct io_slots *s);

/* For the worker's sleep. */
int io_slots_completion_fd(const struct io_slots *s);
bool io_slots_in_flight(const struct io_slots *s);
bool io_slots_submit_pending(const struct io_slots *s);

#endif

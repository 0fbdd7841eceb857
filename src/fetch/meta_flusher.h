/* The metadata flusher: makes header bits durable in the metadata file. It
 * owns the metadata channel, a private copy of the file's headers (what the
 * file holds) and the bits asked for since; it knows nothing of stripes'
 * data or of the shared stripe state.
 *
 * Each bit asked for ends with an outcome (outcome.h) for the worker loop:
 * OUTCOME_BITS_DURABLE once a write + flush put it on stable storage,
 * OUTCOME_BITS_FAILED once retries are spent; several bits of one stripe
 * may come in one outcome. Worker thread only, except init/fini and the
 * stats. */
#ifndef UBIBLK_FETCH_META_FLUSHER_H
#define UBIBLK_FETCH_META_FLUSHER_H

#include <stdbool.h>
#include <stdint.h>

#include "fetch/fetch.h"
#include "fetch/io_slot.h"
#include "fetch/outcome.h"
#include "fetch/stripe_fifo.h"
#include "meta/meta.h"

#define FLUSHER_SLOTS	     16u
#define METADATA_MAX_RETRIES 3u

struct flusher_counters {
	uint64_t metadata_writes;
	uint64_t metadata_failures;
};

struct meta_flusher {
	struct io_slots sectors; /* a slot's key is its header group */
	struct metadata durable; /* private copy: what the file holds */
	uint64_t stripes;
	uint8_t *wanted; /* per stripe: bits requested, not durable yet */
	uint64_t groups;
	uint8_t *group_flags;
	struct stripe_fifo dirty; /* groups with wanted bits, in request order */
	struct flusher_counters counters;
};

/* Takes the headers of `loaded` (left empty). 0 or -ENOMEM. */
int flusher_init(struct meta_flusher *fl, struct bdev *dev, struct metadata *loaded,
		 uint64_t stripes);
void flusher_fini(struct meta_flusher *fl);
int flusher_open(struct meta_flusher *fl);
void flusher_close(struct meta_flusher *fl);

enum flusher_request_result {
	FLUSHER_QUEUED,	 /* an outcome will follow */
	FLUSHER_DURABLE, /* the bit is durable already */
	FLUSHER_REFUSED, /* out of memory (logged): the bit is not stored */
};
/* Asks for `bit` of `stripe` to be made durable. */
enum flusher_request_result flusher_request(struct meta_flusher *fl, uint64_t stripe, uint8_t bit);
/* One step each; true when anything moved. */
bool flusher_start(struct meta_flusher *fl);
bool flusher_poll(struct meta_flusher *fl, struct outcome_list *out);
/* Shutdown, after flusher_close(): forgets the bits asked for and not
 * durable; returns them. */
uint8_t flusher_forget(struct meta_flusher *fl, uint64_t stripe);

/* From any thread: fills the metadata_* fields. */
void flusher_stats(const struct meta_flusher *fl, struct fetch_stats *out);
/* For the worker's sleep. */
int flusher_wait_fd(const struct meta_flusher *fl);
bool flusher_submit_pending(const struct meta_flusher *fl);
bool flusher_in_flight(const struct meta_flusher *fl);

#endif

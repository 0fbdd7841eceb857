/* Copying stripes from the source to the disk.
 *
 * A slot owns one aligned stripe buffer for a whole attempt: source read ->
 * disk write of the stripe's part of the disk -> disk flush. Only then is
 * the FETCHED bit handed to the metadata flusher (the slot is free again:
 * the data is durable, the buffer no longer needed). Explicit requests wait
 * in `queue`; the autofetch walk admits a stripe only when that queue is
 * empty and a slot is free, so a guest's request never waits behind more
 * than the copies already running. */
#include "fetch/worker_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define POLL_BATCH 32

static enum fetch_stripe_phase phase_of(const struct fetcher *f, uint64_t stripe)
{
	return (enum fetch_stripe_phase)(f->phase[stripe] & PHASE_MASK);
}

static unsigned retries_of(const struct fetcher *f, uint64_t stripe)
{
	return f->phase[stripe] >> RETRIES_SHIFT;
}

static void set_phase(struct fetcher *f, uint64_t stripe, enum fetch_stripe_phase phase,
		      unsigned retries)
{
	f->phase[stripe] = (uint8_t)(phase | (retries << RETRIES_SHIFT));
}

int fetcher_init(struct fetcher *f, const struct fetch_worker_options *opts, uint32_t alignment,
		 const struct stripe_state *state)
{
	memset(f, 0, sizeof(*f));
	f->source = opts->source;
	f->source_sectors = stripe_source_sector_count(opts->source);
	f->disk_dev = opts->disk;
	f->disk_sectors = bdev_sector_count(opts->disk);
	f->stripe_sectors = 1u << stripe_state_shift(state);
	f->stripes = stripe_state_count(state);
	f->autofetch = opts->autofetch;
	uint64_t source_stripes = source_stripe_count(opts->source);
	f->autofetch_end = source_stripes < f->stripes ? source_stripes : f->stripes;
	f->phase = calloc(f->stripes ? f->stripes : 1, 1);
	if (!f->phase)
		return -ENOMEM;
	size_t stripe_bytes = (size_t)f->stripe_sectors * SECTOR_SIZE;
	for (unsigned i = 0; i < FETCH_MAX_CONCURRENT; i++) {
		f->slots[i].buf = buffer_alloc(alignment, stripe_bytes);
		if (!f->slots[i].buf)
			return -ENOMEM;
	}
	return 0;
}

void fetcher_fini(struct fetcher *f)
{
	for (unsigned i = 0; i < FETCH_MAX_CONCURRENT; i++) {
		buffer_free(f->slots[i].buf);
		f->slots[i].buf = NULL;
	}
	free(f->phase);
	f->phase = NULL;
	stripe_fifo_free(&f->queue);
	stripe_source_destroy(f->source);
	f->source = NULL;
}

int fetcher_open(struct fetcher *f)
{
	int rc = bdev_channel_create(f->disk_dev, WORKER_CHANNEL_DEPTH, &f->disk);
	if (rc < 0)
		return rc;
	return f->source ? source_open(f->source) : 0;
}

/* Waits for the reads and writes still using slot buffers. */
void fetcher_close(struct fetcher *f)
{
	if (f->source)
		source_close(f->source);
	bdev_channel_destroy(f->disk);
	f->disk = NULL;
}

void fetcher_request(struct fetch_worker *w, uint64_t stripe)
{
	struct fetcher *f = &w->fetcher;
	if (stripe >= f->stripes || !worker_needs_fetch(w, stripe) ||
	    phase_of(f, stripe) != PHASE_IDLE)
		return;
	if (stripe_fifo_push(&f->queue, stripe) < 0) {
		log_error("fetch: out of memory queueing stripe %llu", (unsigned long long)stripe);
		stripe_state_set_failed(w->state, stripe);
		w->changed = true;
		return;
	}
	set_phase(f, stripe, PHASE_QUEUED, retries_of(f, stripe));
}

static struct fetch_slot *free_slot(struct fetcher *f)
{
	for (unsigned i = 0; i < FETCH_MAX_CONCURRENT; i++)
		if (f->slots[i].stage == SLOT_FREE)
			return &f->slots[i];
	return NULL;
}

static uint64_t slot_index(const struct fetcher *f, const struct fetch_slot *slot)
{
	return (uint64_t)(slot - f->slots);
}

/* An attempt ended badly: queue it again, or give up after the retries. */
static void attempt_failed(struct fetch_worker *w, uint64_t stripe, int result)
{
	struct fetcher *f = &w->fetcher;
	worker_stat_add(&w->stats.fetch_failures, 1);
	unsigned retries = retries_of(f, stripe);
	if (retries < FETCH_MAX_RETRIES && stripe_fifo_push(&f->queue, stripe) == 0) {
		log_warn("fetch: stripe %llu failed (%s), retry %u of %u",
			 (unsigned long long)stripe, strerror(-result), retries + 1,
			 FETCH_MAX_RETRIES);
		set_phase(f, stripe, PHASE_QUEUED, retries + 1);
		return;
	}
	log_error("fetch: stripe %llu failed (%s) after %u retries; I/O to it fails until "
		  "the backend is restarted",
		  (unsigned long long)stripe, strerror(-result), retries);
	set_phase(f, stripe, PHASE_IDLE, 0);
	stripe_state_set_failed(w->state, stripe);
	w->changed = true;
}

static void release_slot(struct fetch_slot *slot)
{
	slot->stage = SLOT_FREE;
}

/* The next stripe of the autofetch walk that still needs copying, or false
 * when the walk is over. */
static bool next_autofetch(struct fetch_worker *w, uint64_t *stripe)
{
	struct fetcher *f = &w->fetcher;
	while (f->autofetch_next < f->autofetch_end) {
		uint64_t s = f->autofetch_next++;
		if (phase_of(f, s) == PHASE_IDLE && worker_needs_fetch(w, s)) {
			*stripe = s;
			return true;
		}
	}
	return false;
}

static void start_attempt(struct fetch_worker *w, struct fetch_slot *slot, uint64_t stripe)
{
	struct fetcher *f = &w->fetcher;
	set_phase(f, stripe, PHASE_COPYING, retries_of(f, stripe));
	slot->stripe = stripe;
	slot->started_ns = now_ns();
	slot->stage = SLOT_READING;
	int rc = f->source ? source_request(f->source, stripe, slot->buf) : -ENODEV;
	if (rc < 0) {
		release_slot(slot);
		attempt_failed(w, stripe, rc);
	}
}

bool fetcher_start(struct fetch_worker *w)
{
	struct fetcher *f = &w->fetcher;
	bool progress = false;
	struct fetch_slot *slot;
	while ((slot = free_slot(f)) != NULL) {
		uint64_t stripe;
		if (stripe_fifo_pop(&f->queue, &stripe)) {
			/* Every queued stripe is QUEUED; checked so that a
			 * stray entry can never start a second copy. */
			if (phase_of(f, stripe) != PHASE_QUEUED)
				continue;
		} else if (!f->autofetch || !next_autofetch(w, &stripe)) {
			break;
		}
		start_attempt(w, slot, stripe);
		progress = true;
	}
	return progress;
}

static struct fetch_slot *slot_reading(struct fetcher *f, uint64_t stripe)
{
	for (unsigned i = 0; i < FETCH_MAX_CONCURRENT; i++)
		if (f->slots[i].stage == SLOT_READING && f->slots[i].stripe == stripe)
			return &f->slots[i];
	return NULL;
}

static void write_to_disk(struct fetcher *f, struct fetch_slot *slot)
{
	uint64_t first = slot->stripe * f->stripe_sectors;
	uint64_t left = f->disk_sectors - first;
	uint64_t sectors = left < f->stripe_sectors ? left : f->stripe_sectors;
	slot->iov.iov_base = slot->buf;
	slot->iov.iov_len = (size_t)sectors * SECTOR_SIZE;
	bdev_add_writev(f->disk, first, &slot->iov, 1, slot_index(f, slot));
	slot->stage = SLOT_WRITING;
}

static bool poll_source(struct fetch_worker *w, bool *disk_added)
{
	struct fetcher *f = &w->fetcher;
	if (!f->source)
		return false;
	struct source_completion done[POLL_BATCH];
	bool progress = false;
	int n;
	while ((n = source_poll(f->source, done, POLL_BATCH)) > 0) {
		progress = true;
		for (int i = 0; i < n; i++) {
			struct fetch_slot *slot = slot_reading(f, done[i].stripe);
			if (!slot) {
				log_error("fetch: the source completed stripe %llu, which is not "
					  "being read",
					  (unsigned long long)done[i].stripe);
				continue;
			}
			if (done[i].result < 0) {
				release_slot(slot);
				attempt_failed(w, slot->stripe, done[i].result);
				continue;
			}
			write_to_disk(f, slot);
			*disk_added = true;
		}
	}
	return progress;
}

/* The stripe's data is on the disk and flushed: record the latency and ask
 * for the FETCHED bit. */
static void copy_done(struct fetch_worker *w, struct fetch_slot *slot)
{
	struct fetcher *f = &w->fetcher;
	uint64_t latency = now_ns() - slot->started_ns;
	worker_stat_add(&w->stats.fetch_latency_ns_total, latency);
	worker_stat_max(&w->stats.fetch_latency_ns_max, latency);
	uint64_t stripe = slot->stripe;
	release_slot(slot);
	set_phase(f, stripe, PHASE_PERSISTING, retries_of(f, stripe));
	flusher_request(w, stripe, META_HEADER_FETCHED);
}

static bool poll_disk(struct fetch_worker *w, bool *disk_added)
{
	struct fetcher *f = &w->fetcher;
	struct bdev_completion done[POLL_BATCH];
	bool progress = false;
	int n;
	while ((n = bdev_poll(f->disk, done, POLL_BATCH)) > 0) {
		progress = true;
		for (int i = 0; i < n; i++) {
			if (done[i].id >= FETCH_MAX_CONCURRENT ||
			    f->slots[done[i].id].stage < SLOT_WRITING) {
				log_error("fetch: unexpected disk completion %llu",
					  (unsigned long long)done[i].id);
				continue;
			}
			struct fetch_slot *slot = &f->slots[done[i].id];
			if (done[i].result < 0) {
				release_slot(slot);
				attempt_failed(w, slot->stripe, done[i].result);
			} else if (slot->stage == SLOT_WRITING) {
				/* Data before the FETCHED bit: flush the disk
				 * first (free under write_through). */
				bdev_add_flush(f->disk, done[i].id);
				slot->stage = SLOT_FLUSHING;
				*disk_added = true;
			} else {
				copy_done(w, slot);
			}
		}
	}
	return progress;
}

bool fetcher_poll(struct fetch_worker *w)
{
	struct fetcher *f = &w->fetcher;
	bool disk_added = false;
	bool progress = poll_source(w, &disk_added);
	if (poll_disk(w, &disk_added))
		progress = true;
	if (disk_added || f->disk_submit_failed) {
		/* On failure the operations stay queued and complete through
		 * bdev_poll; the loop retries while this flag is set. */
		int rc = bdev_submit(f->disk);
		if (rc < 0 && !f->disk_submit_failed)
			log_warn("fetch: submitting to the disk failed: %s; retrying",
				 strerror(-rc));
		f->disk_submit_failed = rc < 0;
	}
	return progress;
}

void fetcher_persisted(struct fetch_worker *w, uint64_t stripe)
{
	struct fetcher *f = &w->fetcher;
	if (phase_of(f, stripe) == PHASE_PERSISTING)
		set_phase(f, stripe, PHASE_IDLE, 0);
}

void fetcher_persist_failed(struct fetch_worker *w, uint64_t stripe)
{
	fetcher_persisted(w, stripe);
}

bool fetcher_busy(const struct fetcher *f)
{
	if (f->queue.count > 0)
		return true;
	for (unsigned i = 0; i < FETCH_MAX_CONCURRENT; i++)
		if (f->slots[i].stage != SLOT_FREE)
			return true;
	return false;
}

void fetcher_drop_source_if_done(struct fetch_worker *w)
{
	struct fetcher *f = &w->fetcher;
	if (!f->source || f->unfetched > 0 || fetcher_busy(f) || source_busy(f->source))
		return;
	if (f->source_sectors > 0)
		log_info("fetch: all stripes fetched, disconnected from the source");
	source_close(f->source);
	stripe_source_destroy(f->source);
	f->source = NULL;
	__atomic_store_n(&w->has_source, false, __ATOMIC_RELEASE);
}

/* Shutdown: every stripe somebody is waiting for fails, so no I/O thread
 * waits for a worker that is gone. */
void fetcher_fail_outstanding(struct fetch_worker *w)
{
	struct fetcher *f = &w->fetcher;
	for (uint64_t s = 0; s < f->stripes; s++) {
		if (phase_of(f, s) == PHASE_IDLE)
			continue;
		set_phase(f, s, PHASE_IDLE, 0);
		if (worker_needs_fetch(w, s))
			worker_abandon(w, s);
	}
}

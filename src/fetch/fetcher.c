/* Copying stripes from the source to the disk.
 *
 * A slot owns one aligned stripe buffer for a whole attempt: source read ->
 * disk write of the stripe's part of the disk -> disk flush. Only then is
 * the stripe reported copied (the slot is free again: the data is durable,
 * the buffer no longer needed). Explicit requests wait in `queue`; the
 * autofetch walk admits a stripe only when that queue is empty and a slot
 * is free, so a guest's request never waits behind more than the copies
 * already running. */
#include "fetch/fetcher.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "fetch/counter.h"

#define PHASE_MASK    0x0fu
#define RETRIES_SHIFT 4u

/* Each slot has at most one operation in flight, so this leaves slack. */
#define DISK_CHANNEL_DEPTH (2u * FETCH_MAX_CONCURRENT)

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

static bool has_source(const struct fetcher *f, uint64_t stripe)
{
	return (f->has_source[stripe / 64] >> (stripe % 64)) & 1u;
}

uint64_t fetcher_count_unfetched(const struct stripe_state *state, const struct metadata *m)
{
	uint64_t stripes = stripe_state_count(state);
	uint64_t count = 0;
	for (uint64_t i = 0; i < stripes && i < m->header_count; i++) {
		enum stripe_fetch_state s = stripe_state_fetch(state, i);
		if ((s == STRIPE_NOT_FETCHED || s == STRIPE_FAILED) &&
		    (m->headers[i] & META_HEADER_HAS_SOURCE))
			count++;
	}
	return count;
}

static void set_source_connected(struct fetcher *f, bool connected)
{
	__atomic_store_n(&f->counters.source_connected, connected, __ATOMIC_RELEASE);
}

int fetcher_init(struct fetcher *f, struct stripe_source *source, struct bdev *disk,
		 const struct stripe_state *state, const struct metadata *loaded, bool autofetch,
		 uint32_t alignment)
{
	memset(f, 0, sizeof(*f));
	f->source = source;
	f->state = state;
	f->source_sectors = stripe_source_sector_count(source);
	f->disk_sectors = bdev_sector_count(disk);
	f->stripe_sectors = 1u << stripe_state_shift(state);
	f->stripes = stripe_state_count(state);
	f->autofetch = autofetch;
	uint64_t source_stripes = source_stripe_count(source);
	f->autofetch_end = source_stripes < f->stripes ? source_stripes : f->stripes;
	f->phase = calloc(f->stripes ? f->stripes : 1, 1);
	f->has_source = calloc(f->stripes / 64 + 1, sizeof(uint64_t));
	if (!f->phase || !f->has_source)
		return -ENOMEM;
	for (uint64_t i = 0; i < f->stripes && i < loaded->header_count; i++)
		if (loaded->headers[i] & META_HEADER_HAS_SOURCE)
			f->has_source[i / 64] |= 1ull << (i % 64);
	int rc = io_slots_init(&f->disk, disk, FETCH_MAX_CONCURRENT, alignment,
			       (size_t)f->stripe_sectors * SECTOR_SIZE, "disk", "the disk");
	if (rc < 0)
		return rc;
	/* A finished disk does not need its source to match any more: it is
	 * never opened. */
	f->unfetched = fetcher_count_unfetched(state, loaded);
	if (f->unfetched == 0) {
		stripe_source_destroy(f->source);
		f->source = NULL;
	}
	set_source_connected(f, f->source != NULL);
	return 0;
}

void fetcher_fini(struct fetcher *f)
{
	io_slots_fini(&f->disk);
	free(f->phase);
	f->phase = NULL;
	free(f->has_source);
	f->has_source = NULL;
	stripe_fifo_free(&f->queue);
	stripe_source_destroy(f->source);
	f->source = NULL;
}

int fetcher_open(struct fetcher *f)
{
	int rc = io_slots_open(&f->disk, DISK_CHANNEL_DEPTH);
	if (rc < 0)
		return rc;
	return f->source ? source_open(f->source) : 0;
}

void fetcher_close(struct fetcher *f)
{
	if (f->source)
		source_close(f->source);
	io_slots_close(&f->disk);
}

bool fetcher_needs_fetch(const struct fetcher *f, uint64_t stripe)
{
	enum stripe_fetch_state s = stripe_state_fetch(f->state, stripe);
	/* HAS_SOURCE from the metadata file, not only the shared state: a
	 * stripe without a source may be Failed (its WRITTEN bit could not be
	 * stored) and must never be overwritten from the source. */
	return (s == STRIPE_NOT_FETCHED || s == STRIPE_FAILED) && has_source(f, stripe);
}

int fetcher_request(struct fetcher *f, uint64_t stripe)
{
	if (stripe >= f->stripes || !fetcher_needs_fetch(f, stripe) ||
	    phase_of(f, stripe) != PHASE_IDLE)
		return 0;
	if (stripe_fifo_push(&f->queue, stripe) < 0) {
		log_error("fetch: out of memory queueing stripe %llu", (unsigned long long)stripe);
		return -ENOMEM;
	}
	set_phase(f, stripe, PHASE_QUEUED, retries_of(f, stripe));
	return 0;
}

/* An attempt ended badly: queue it again, or give up after the retries.
 * Giving up is an outcome, so the caller has room for one. */
static void attempt_failed(struct fetcher *f, uint64_t stripe, int result, struct outcome_list *out)
{
	counter_add(&f->counters.fetch_failures, 1);
	unsigned retries = retries_of(f, stripe);
	if (retries < FETCH_MAX_RETRIES && stripe_fifo_push(&f->queue, stripe) == 0) {
		log_warn("fetch: stripe %llu failed (%s), retry %u of %u",
			 (unsigned long long)stripe, strerror(-result), retries + 1,
			 FETCH_MAX_RETRIES);
		set_phase(f, stripe, PHASE_QUEUED, retries + 1);
		return;
	}
	counter_add(&f->counters.stripes_failed, 1);
	log_error("fetch: stripe %llu failed (%s) after %u retries; I/O to it fails until "
		  "the backend is restarted",
		  (unsigned long long)stripe, strerror(-result), retries);
	set_phase(f, stripe, PHASE_IDLE, 0);
	outcome_add(out, OUTCOME_FETCH_FAILED, stripe, 0);
}

/* The next stripe of the autofetch walk that still needs copying, or false
 * when the walk is over. */
static bool next_autofetch(struct fetcher *f, uint64_t *stripe)
{
	while (f->autofetch_next < f->autofetch_end) {
		uint64_t s = f->autofetch_next++;
		if (phase_of(f, s) == PHASE_IDLE && fetcher_needs_fetch(f, s)) {
			*stripe = s;
			return true;
		}
	}
	return false;
}

static void start_attempt(struct fetcher *f, struct io_slot *slot, uint64_t stripe,
			  struct outcome_list *out)
{
	set_phase(f, stripe, PHASE_COPYING, retries_of(f, stripe));
	slot->key = stripe;
	f->started_ns[io_slot_index(&f->disk, slot)] = now_ns();
	int rc = f->source ? source_request(f->source, stripe, slot->buf) : -ENODEV;
	if (rc < 0) {
		io_slot_release(slot);
		attempt_failed(f, stripe, rc, out);
	}
}

bool fetcher_start(struct fetcher *f, struct outcome_list *out)
{
	bool progress = false;
	struct io_slot *slot;
	/* An attempt may fail at once and give up: one outcome each. */
	while (outcome_room(out) > 0 && (slot = io_slots_acquire(&f->disk)) != NULL) {
		uint64_t stripe;
		if (stripe_fifo_pop(&f->queue, &stripe)) {
			/* Every queued stripe is QUEUED; checked so that a
			 * stray entry can never start a second copy. */
			if (phase_of(f, stripe) != PHASE_QUEUED) {
				io_slot_release(slot);
				continue;
			}
		} else if (!f->autofetch || !next_autofetch(f, &stripe)) {
			io_slot_release(slot);
			break;
		}
		start_attempt(f, slot, stripe, out);
		progress = true;
	}
	return progress;
}

static void write_to_disk(struct fetcher *f, struct io_slot *slot)
{
	uint64_t first = slot->key * f->stripe_sectors;
	uint64_t left = f->disk_sectors - first;
	uint64_t sectors = left < f->stripe_sectors ? left : f->stripe_sectors;
	io_slots_write(&f->disk, slot, first, (size_t)sectors * SECTOR_SIZE);
}

/* Source reads done: their stripes go to the disk. A failure may give up:
 * at most one outcome per completion. */
static bool poll_source(struct fetcher *f, struct outcome_list *out)
{
	if (!f->source)
		return false;
	struct source_completion done[IO_SLOTS_POLL_BATCH];
	bool progress = false;
	int n;
	while (outcome_room(out) > 0) {
		int batch = IO_SLOTS_POLL_BATCH;
		if ((size_t)batch > outcome_room(out))
			batch = (int)outcome_room(out);
		n = source_poll(f->source, done, batch);
		if (n <= 0)
			break;
		progress = true;
		for (int i = 0; i < n; i++) {
			struct io_slot *slot = io_slots_find_held(&f->disk, done[i].stripe);
			if (!slot) {
				log_error("fetch: the source completed stripe %llu, which is not "
					  "being read",
					  (unsigned long long)done[i].stripe);
				continue;
			}
			if (done[i].result < 0) {
				io_slot_release(slot);
				attempt_failed(f, slot->key, done[i].result, out);
				continue;
			}
			write_to_disk(f, slot);
		}
	}
	return progress;
}

/* The stripe's data is on the disk and flushed: record the latency and
 * report it copied. */
static void copy_done(struct fetcher *f, struct io_slot *slot, struct outcome_list *out)
{
	uint64_t latency = now_ns() - f->started_ns[io_slot_index(&f->disk, slot)];
	counter_add(&f->counters.fetch_latency_ns_total, latency);
	counter_max(&f->counters.fetch_latency_ns_max, latency);
	counter_add(
	    &f->counters.fetch_latency_buckets[duration_bucket(latency, FETCH_DURATION_BUCKETS)],
	    1);
	uint64_t stripe = slot->key;
	io_slot_release(slot);
	set_phase(f, stripe, PHASE_PERSISTING, retries_of(f, stripe));
	outcome_add(out, OUTCOME_COPIED, stripe, 0);
}

bool fetcher_poll(struct fetcher *f, struct outcome_list *out)
{
	bool progress = poll_source(f, out);
	struct io_slot_done done[FETCH_MAX_CONCURRENT];
	size_t room = outcome_room(out);
	int max = room < FETCH_MAX_CONCURRENT ? (int)room : (int)FETCH_MAX_CONCURRENT;
	int n = io_slots_poll(&f->disk, done, max, &progress);
	for (int i = 0; i < n; i++) {
		if (done[i].result < 0) {
			io_slot_release(done[i].slot);
			attempt_failed(f, done[i].slot->key, done[i].result, out);
		} else {
			copy_done(f, done[i].slot, out);
		}
	}
	io_slots_submit(&f->disk);
	return progress;
}

static void persist_done(struct fetcher *f, uint64_t stripe)
{
	if (phase_of(f, stripe) == PHASE_PERSISTING)
		set_phase(f, stripe, PHASE_IDLE, 0);
}

void fetcher_fetched(struct fetcher *f, uint64_t stripe)
{
	if (fetcher_needs_fetch(f, stripe) && f->unfetched > 0)
		f->unfetched--;
	persist_done(f, stripe);
	uint64_t sectors = 0;
	uint64_t first = stripe * f->stripe_sectors;
	if (first < f->source_sectors) {
		sectors = f->source_sectors - first;
		if (sectors > f->stripe_sectors)
			sectors = f->stripe_sectors;
	}
	counter_add(&f->counters.stripes_fetched, 1);
	counter_add(&f->counters.bytes_fetched, sectors * SECTOR_SIZE);
}

void fetcher_persist_failed(struct fetcher *f, uint64_t stripe)
{
	persist_done(f, stripe);
}

void fetcher_lost(struct fetcher *f, uint64_t stripe)
{
	if (fetcher_needs_fetch(f, stripe))
		f->unfetched++;
}

static bool busy(const struct fetcher *f)
{
	return f->queue.count > 0 || !io_slots_all_free(&f->disk);
}

bool fetcher_drop_source_if_done(struct fetcher *f)
{
	if (!f->source || f->unfetched > 0 || busy(f) || source_busy(f->source))
		return false;
	if (f->source_sectors > 0)
		log_info("fetch: all stripes fetched, disconnected from the source");
	source_close(f->source);
	stripe_source_destroy(f->source);
	f->source = NULL;
	set_source_connected(f, false);
	return true;
}

bool fetcher_forget(struct fetcher *f, uint64_t stripe)
{
	if (phase_of(f, stripe) == PHASE_IDLE)
		return false;
	set_phase(f, stripe, PHASE_IDLE, 0);
	return true;
}

void fetcher_stats(const struct fetcher *f, struct fetch_stats *out)
{
	const struct fetcher_counters *c = &f->counters;
	out->stripes_fetched = counter_read(&c->stripes_fetched);
	out->bytes_fetched = counter_read(&c->bytes_fetched);
	out->fetch_failures = counter_read(&c->fetch_failures);
	out->stripes_failed = counter_read(&c->stripes_failed);
	out->fetch_latency_ns_total = counter_read(&c->fetch_latency_ns_total);
	out->fetch_latency_ns_max = counter_read(&c->fetch_latency_ns_max);
	for (int b = 0; b <= FETCH_DURATION_BUCKETS; b++)
		out->fetch_latency_buckets[b] = counter_read(&c->fetch_latency_buckets[b]);
	out->source_connected = __atomic_load_n(&c->source_connected, __ATOMIC_ACQUIRE);
}

int fetcher_wait_fds(const struct fetcher *f, int fds[2])
{
	int n = 0;
	fds[n++] = io_slots_completion_fd(&f->disk);
	if (f->source)
		fds[n++] = source_completion_fd(f->source);
	return n;
}

bool fetcher_submit_pending(const struct fetcher *f)
{
	return io_slots_submit_pending(&f->disk);
}

bool fetcher_in_flight(const struct fetcher *f)
{
	return io_slots_in_flight(&f->disk) || (f->source && source_busy(f->source));
}

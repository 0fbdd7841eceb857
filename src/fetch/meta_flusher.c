/* Making header bits durable in the metadata file.
 *
 * `durable` is a private copy of the file's headers (loaded at start-up) and
 * only ever holds what a completed write + flush put there; `wanted` holds
 * the bits asked for since. A header group (512 stripes, one metadata
 * sector) is written from durable | wanted; one write per group is in flight
 * at a time, so two writes of one sector never race, and every bit asked for
 * while a write is in flight goes out together with the next one. A failed
 * write or flush leaves `durable` untouched (so a retry really rewrites the
 * bit instead of trusting a copy that never reached the disk) and is retried
 * METADATA_MAX_RETRIES times; then every stripe whose bit it carried is
 * reported failed, so the requests waiting for it fail instead of hanging. */
#include "fetch/meta_flusher.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "fetch/counter.h"

#define FLUSHER_ALIGNMENT 4096u
/* Each slot has at most one operation in flight, so this leaves slack. */
#define METADATA_CHANNEL_DEPTH (2u * FLUSHER_SLOTS)

#define GROUP_QUEUED	0x01u
#define GROUP_IN_FLIGHT 0x02u

int flusher_init(struct meta_flusher *fl, struct bdev *dev, struct metadata *loaded,
		 uint64_t stripes)
{
	memset(fl, 0, sizeof(*fl));
	fl->durable = *loaded;
	*loaded = (struct metadata){0};
	fl->stripes = stripes;
	fl->groups = stripes / META_HEADERS_PER_SECTOR + (stripes % META_HEADERS_PER_SECTOR != 0);
	fl->wanted = calloc(stripes ? stripes : 1, 1);
	fl->group_flags = calloc(fl->groups ? fl->groups : 1, 1);
	if (!fl->wanted || !fl->group_flags)
		return -ENOMEM;
	return io_slots_init(&fl->sectors, dev, FLUSHER_SLOTS, FLUSHER_ALIGNMENT, SECTOR_SIZE,
			     "metadata", "the metadata file");
}

void flusher_fini(struct meta_flusher *fl)
{
	io_slots_fini(&fl->sectors);
	free(fl->wanted);
	free(fl->group_flags);
	fl->wanted = NULL;
	fl->group_flags = NULL;
	stripe_fifo_free(&fl->dirty);
	meta_free(&fl->durable);
}

int flusher_open(struct meta_flusher *fl)
{
	return io_slots_open(&fl->sectors, METADATA_CHANNEL_DEPTH);
}

void flusher_close(struct meta_flusher *fl)
{
	io_slots_close(&fl->sectors);
}

static bool has_bit(const struct meta_flusher *fl, uint64_t stripe, uint8_t bit)
{
	return (fl->durable.headers[stripe] & bit) == bit;
}

static int queue_group(struct meta_flusher *fl, uint64_t group)
{
	if (fl->group_flags[group] & (GROUP_QUEUED | GROUP_IN_FLIGHT))
		return 0;
	int rc = stripe_fifo_push(&fl->dirty, group);
	if (rc == 0)
		fl->group_flags[group] |= GROUP_QUEUED;
	return rc;
}

enum flusher_request_result flusher_request(struct meta_flusher *fl, uint64_t stripe, uint8_t bit)
{
	if (has_bit(fl, stripe, bit))
		return FLUSHER_DURABLE;
	fl->wanted[stripe] |= bit;
	if (queue_group(fl, stripe / META_HEADERS_PER_SECTOR) < 0) {
		log_error("fetch: out of memory queueing a metadata update for stripe %llu",
			  (unsigned long long)stripe);
		fl->wanted[stripe] &= (uint8_t)~bit;
		return FLUSHER_REFUSED;
	}
	return FLUSHER_QUEUED;
}

static uint64_t group_first(uint64_t group)
{
	return group * META_HEADERS_PER_SECTOR;
}

/* The sector as it should be: durable headers plus every wanted bit. */
static void fill_sector(const struct meta_flusher *fl, uint64_t group, uint8_t *buf)
{
	uint64_t first = group_first(group);
	for (unsigned i = 0; i < META_HEADERS_PER_SECTOR; i++) {
		uint64_t s = first + i;
		uint8_t header = s < fl->durable.header_count ? fl->durable.headers[s] : 0;
		if (s < fl->stripes)
			header |= fl->wanted[s];
		buf[i] = header;
	}
}

static void issue_write(struct meta_flusher *fl, struct io_slot *slot)
{
	fill_sector(fl, slot->key, slot->buf);
	io_slots_write(&fl->sectors, slot, 1 + slot->key, SECTOR_SIZE);
	counter_add(&fl->counters.metadata_writes, 1);
}

bool flusher_start(struct meta_flusher *fl)
{
	bool progress = false;
	struct io_slot *slot;
	while (fl->dirty.count > 0 && (slot = io_slots_acquire(&fl->sectors)) != NULL) {
		uint64_t group;
		stripe_fifo_pop(&fl->dirty, &group);
		fl->group_flags[group] = GROUP_IN_FLIGHT;
		slot->key = group;
		slot->attempts = 0;
		issue_write(fl, slot);
		progress = true;
	}
	io_slots_submit(&fl->sectors);
	return progress;
}

/* The group is no longer in flight; bits asked for meanwhile go next. */
static void release_slot(struct meta_flusher *fl, struct io_slot *slot, bool more)
{
	io_slot_release(slot);
	fl->group_flags[slot->key] = 0;
	if (more && queue_group(fl, slot->key) < 0)
		log_error("fetch: out of memory queueing metadata sector %llu",
			  (unsigned long long)(1 + slot->key));
}

/* The slot's update is over: its sector is on stable storage (`durable`),
 * or retries are spent and every bit it was to carry is reported failed. */
static void finish_group(struct meta_flusher *fl, struct io_slot *slot, bool durable,
			 struct outcome_list *out)
{
	const uint8_t *sector = slot->buf;
	uint64_t first = group_first(slot->key);
	bool more = false;
	for (unsigned i = 0; i < META_HEADERS_PER_SECTOR; i++) {
		uint64_t s = first + i;
		if (s >= fl->stripes)
			break;
		uint8_t bits = durable ? sector[i] & (uint8_t)~fl->durable.headers[s]
				       : sector[i] & fl->wanted[s];
		if (bits) {
			if (durable)
				fl->durable.headers[s] |= bits;
			fl->wanted[s] &= (uint8_t)~bits;
			outcome_add(out, durable ? OUTCOME_BITS_DURABLE : OUTCOME_BITS_FAILED, s,
				    bits);
		}
		if (fl->wanted[s])
			more = true;
	}
	release_slot(fl, slot, more);
}

static void update_failed(struct meta_flusher *fl, struct io_slot *slot, int result,
			  struct outcome_list *out)
{
	counter_add(&fl->counters.metadata_failures, 1);
	if (slot->attempts++ < METADATA_MAX_RETRIES) {
		log_warn("fetch: writing metadata sector %llu failed (%s), retry %u of %u",
			 (unsigned long long)(1 + slot->key), strerror(-result), slot->attempts,
			 METADATA_MAX_RETRIES);
		issue_write(fl, slot);
		return;
	}
	log_error("fetch: writing metadata sector %llu failed (%s) after %u retries",
		  (unsigned long long)(1 + slot->key), strerror(-result), METADATA_MAX_RETRIES);
	finish_group(fl, slot, false, out);
}

bool flusher_poll(struct meta_flusher *fl, struct outcome_list *out)
{
	/* A finished sector reports up to one outcome per stripe of its
	 * group: take only as many as the list has room for. */
	struct io_slot_done done[FLUSHER_SLOTS];
	size_t fits = outcome_room(out) / META_HEADERS_PER_SECTOR;
	int max = fits < FLUSHER_SLOTS ? (int)fits : (int)FLUSHER_SLOTS;
	bool progress = max == 0;
	int n = io_slots_poll(&fl->sectors, done, max, &progress);
	for (int i = 0; i < n; i++) {
		if (done[i].result < 0)
			update_failed(fl, done[i].slot, done[i].result, out);
		else
			finish_group(fl, done[i].slot, true, out);
	}
	io_slots_submit(&fl->sectors);
	return progress;
}

uint8_t flusher_forget(struct meta_flusher *fl, uint64_t stripe)
{
	uint8_t bits = fl->wanted[stripe];
	fl->wanted[stripe] = 0;
	return bits;
}

void flusher_stats(const struct meta_flusher *fl, struct fetch_stats *out)
{
	out->metadata_writes = counter_read(&fl->counters.metadata_writes);
	out->metadata_failures = counter_read(&fl->counters.metadata_failures);
}

int flusher_wait_fd(const struct meta_flusher *fl)
{
	return io_slots_completion_fd(&fl->sectors);
}

bool flusher_submit_pending(const struct meta_flusher *fl)
{
	return io_slots_submit_pending(&fl->sectors);
}

bool flusher_in_flight(const struct meta_flusher *fl)
{
	return io_slots_in_flight(&fl->sectors);
}

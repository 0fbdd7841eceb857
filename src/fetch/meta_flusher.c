/* Making header bits durable in the metadata file.
 *
 * `durable` is a private copy of the file's headers (loaded at start-up) and
 * only ever holds what a completed write + flush put there; `wanted` holds
 * the bits asked for since. A header group (512 stripes, one metadata
 * sector) is written from durable | wanted; one write per group is in flight
 * at a time, so two writes of one sector never race, and every bit asked for
 * while a write is in flight goes out together with the next one. A failed
 * write or flush leaves `durable` untouched (so a retry really rewrites the
 * bit: the reference's stale-bit defect cannot happen) and is retried
 * METADATA_MAX_RETRIES times; then every stripe whose bit it carried is
 * reported failed, so the requests waiting for it fail instead of hanging. */
#include "fetch/worker_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define POLL_BATCH 32

int flusher_init(struct meta_flusher *fl, struct bdev *dev, const struct metadata *loaded,
		 uint64_t stripes)
{
	memset(fl, 0, sizeof(*fl));
	fl->dev = dev;
	fl->durable = *loaded;
	fl->stripes = stripes;
	fl->groups = stripes / META_HEADERS_PER_SECTOR + (stripes % META_HEADERS_PER_SECTOR != 0);
	fl->wanted = calloc(stripes ? stripes : 1, 1);
	fl->group_flags = calloc(fl->groups ? fl->groups : 1, 1);
	if (!fl->wanted || !fl->group_flags)
		return -ENOMEM;
	for (unsigned i = 0; i < FLUSHER_SLOTS; i++) {
		fl->slots[i].buf = buffer_alloc(FLUSHER_ALIGNMENT, SECTOR_SIZE);
		if (!fl->slots[i].buf)
			return -ENOMEM;
	}
	return 0;
}

void flusher_fini(struct meta_flusher *fl)
{
	for (unsigned i = 0; i < FLUSHER_SLOTS; i++) {
		buffer_free(fl->slots[i].buf);
		fl->slots[i].buf = NULL;
	}
	free(fl->wanted);
	free(fl->group_flags);
	fl->wanted = NULL;
	fl->group_flags = NULL;
	stripe_fifo_free(&fl->dirty);
	meta_free(&fl->durable);
}

int flusher_open(struct meta_flusher *fl)
{
	return bdev_channel_create(fl->dev, WORKER_CHANNEL_DEPTH, &fl->ch);
}

void flusher_close(struct meta_flusher *fl)
{
	bdev_channel_destroy(fl->ch);
	fl->ch = NULL;
}

bool flusher_has_bit(const struct meta_flusher *fl, uint64_t stripe, uint8_t bit)
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

void flusher_request(struct fetch_worker *w, uint64_t stripe, uint8_t bit)
{
	struct meta_flusher *fl = &w->flusher;
	if (flusher_has_bit(fl, stripe, bit)) {
		worker_header_durable(w, stripe, bit);
		return;
	}
	fl->wanted[stripe] |= bit;
	if (queue_group(fl, stripe / META_HEADERS_PER_SECTOR) < 0) {
		log_error("fetch: out of memory queueing a metadata update for stripe %llu",
			  (unsigned long long)stripe);
		fl->wanted[stripe] &= (uint8_t)~bit;
		worker_header_failed(w, stripe, bit);
	}
}

static struct flush_slot *free_slot(struct meta_flusher *fl)
{
	for (unsigned i = 0; i < FLUSHER_SLOTS; i++)
		if (fl->slots[i].stage == FLUSH_FREE)
			return &fl->slots[i];
	return NULL;
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

static void issue_write(struct meta_flusher *fl, struct flush_slot *slot)
{
	fill_sector(fl, slot->group, slot->buf);
	slot->iov.iov_base = slot->buf;
	slot->iov.iov_len = SECTOR_SIZE;
	bdev_add_writev(fl->ch, 1 + slot->group, &slot->iov, 1, (uint64_t)(slot - fl->slots));
	slot->stage = FLUSH_WRITING;
}

/* Operations the kernel did not take stay queued inside bdev and complete
 * through bdev_poll; the loop keeps retrying while submit_failed is set. */
static void submit(struct meta_flusher *fl)
{
	int rc = bdev_submit(fl->ch);
	if (rc < 0 && !fl->submit_failed)
		log_warn("fetch: submitting to the metadata file failed: %s; retrying",
			 strerror(-rc));
	fl->submit_failed = rc < 0;
}

bool flusher_start(struct fetch_worker *w)
{
	struct meta_flusher *fl = &w->flusher;
	bool progress = false;
	struct flush_slot *slot;
	while (fl->dirty.count > 0 && (slot = free_slot(fl)) != NULL) {
		uint64_t group;
		stripe_fifo_pop(&fl->dirty, &group);
		fl->group_flags[group] = GROUP_IN_FLIGHT;
		slot->group = group;
		slot->attempts = 0;
		issue_write(fl, slot);
		worker_stat_add(&w->stats.metadata_writes, 1);
		progress = true;
	}
	if (progress || fl->submit_failed)
		submit(fl);
	return progress;
}

/* The group is no longer in flight; bits asked for meanwhile go next. */
static void release_slot(struct meta_flusher *fl, struct flush_slot *slot, bool more)
{
	slot->stage = FLUSH_FREE;
	fl->group_flags[slot->group] = 0;
	if (more && queue_group(fl, slot->group) < 0)
		log_error("fetch: out of memory queueing metadata sector %llu",
			  (unsigned long long)(1 + slot->group));
}

/* Write and flush done: the sector in slot->buf is on stable storage. */
static void group_durable(struct fetch_worker *w, struct flush_slot *slot)
{
	struct meta_flusher *fl = &w->flusher;
	uint64_t first = group_first(slot->group);
	bool more = false;
	for (unsigned i = 0; i < META_HEADERS_PER_SECTOR; i++) {
		uint64_t s = first + i;
		if (s >= fl->stripes)
			break;
		uint8_t added = slot->buf[i] & (uint8_t)~fl->durable.headers[s];
		if (added) {
			fl->durable.headers[s] |= added;
			fl->wanted[s] &= (uint8_t)~added;
			worker_header_durable(w, s, added);
		}
		if (fl->wanted[s])
			more = true;
	}
	release_slot(fl, slot, more);
}

/* Out of retries: every bit this sector was to carry is reported failed. */
static void group_failed(struct fetch_worker *w, struct flush_slot *slot, int result)
{
	struct meta_flusher *fl = &w->flusher;
	log_error("fetch: writing metadata sector %llu failed (%s) after %u retries",
		  (unsigned long long)(1 + slot->group), strerror(-result), METADATA_MAX_RETRIES);
	uint64_t first = group_first(slot->group);
	bool more = false;
	for (unsigned i = 0; i < META_HEADERS_PER_SECTOR; i++) {
		uint64_t s = first + i;
		if (s >= fl->stripes)
			break;
		uint8_t lost = slot->buf[i] & fl->wanted[s];
		if (lost) {
			fl->wanted[s] &= (uint8_t)~lost;
			worker_header_failed(w, s, lost);
		}
		if (fl->wanted[s])
			more = true;
	}
	release_slot(fl, slot, more);
}

static void update_failed(struct fetch_worker *w, struct flush_slot *slot, int result)
{
	struct meta_flusher *fl = &w->flusher;
	worker_stat_add(&w->stats.metadata_failures, 1);
	if (slot->attempts++ < METADATA_MAX_RETRIES) {
		log_warn("fetch: writing metadata sector %llu failed (%s), retry %u of %u",
			 (unsigned long long)(1 + slot->group), strerror(-result), slot->attempts,
			 METADATA_MAX_RETRIES);
		issue_write(fl, slot);
		worker_stat_add(&w->stats.metadata_writes, 1);
		return;
	}
	group_failed(w, slot, result);
}

bool flusher_poll(struct fetch_worker *w)
{
	struct meta_flusher *fl = &w->flusher;
	struct bdev_completion done[POLL_BATCH];
	bool progress = false;
	bool added = false;
	int n;
	while ((n = bdev_poll(fl->ch, done, POLL_BATCH)) > 0) {
		progress = true;
		for (int i = 0; i < n; i++) {
			if (done[i].id >= FLUSHER_SLOTS ||
			    fl->slots[done[i].id].stage == FLUSH_FREE) {
				log_error("fetch: unexpected metadata completion %llu",
					  (unsigned long long)done[i].id);
				continue;
			}
			struct flush_slot *slot = &fl->slots[done[i].id];
			if (done[i].result < 0) {
				update_failed(w, slot, done[i].result);
				added = true;
			} else if (slot->stage == FLUSH_WRITING) {
				bdev_add_flush(fl->ch, done[i].id);
				slot->stage = FLUSH_SYNCING;
				added = true;
			} else {
				group_durable(w, slot);
			}
		}
	}
	if (added)
		submit(fl);
	return progress;
}

bool flusher_busy(const struct meta_flusher *fl)
{
	if (fl->dirty.count > 0)
		return true;
	for (unsigned i = 0; i < FLUSHER_SLOTS; i++)
		if (fl->slots[i].stage != FLUSH_FREE)
			return true;
	return false;
}

/* Shutdown: bits never made durable fail their stripes. */
void flusher_fail_outstanding(struct fetch_worker *w)
{
	struct meta_flusher *fl = &w->flusher;
	for (uint64_t s = 0; s < fl->stripes; s++) {
		if (fl->wanted[s]) {
			fl->wanted[s] = 0;
			worker_abandon(w, s);
		}
	}
}

/* One loop on one thread: start reads while a buffer is free, encode what
 * was read, ask the store about it, store it, and sleep in poll(2) on the
 * disk's, the source's and the store's completion fds only when a whole
 * round moved nothing. */
#include "archive_pipeline.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

/* While anything is in flight the sleep is bounded: the progress bar moves
 * on, and an operation the kernel did not take yet is retried. */
#define IN_FLIGHT_SLEEP_MS 200
#define RETRY_SUBMIT_MS	   1
#define POLL_BATCH	   32
#define SEEN_MIN_SLOTS	   1024u

enum slot_state {
	SLOT_FREE = 0,
	SLOT_READ_DISK,
	SLOT_SOURCE_WAIT, /* the source refused it for now (-EBUSY): asked again later */
	SLOT_READ_SOURCE,
	SLOT_HEAD,
	SLOT_PUT,
};

/* One stripe in flight: its plaintext, then its object. */
struct slot {
	enum slot_state state;
	uint64_t stripe;
	uint8_t *plain;	 /* stripe bytes, aligned for O_DIRECT */
	uint8_t *object; /* archive_object_bound bytes */
	size_t object_len;
	uint8_t hash[ARCHIVE_HASH_BYTES];
	struct iovec iov;
};

/* The hashes of the objects this run named (open addressing, grows at half
 * full): a hash found here is deduplicated, whatever its HEAD or PUT is
 * doing, since a failed one ends the run anyway. */
struct seen_set {
	uint8_t (*hashes)[ARCHIVE_HASH_BYTES];
	bool *used;
	size_t slots, count;
};

struct run {
	const struct archive_pipeline_options *o;
	struct archive_input *in;
	struct archive_stripe_map *map;
	struct archive_counts *c;
	struct error *err;
	int failed; /* the first failure's errno; nothing new starts after it */
	struct bdev_channel *ch;
	bool source_opened;
	size_t stripe_bytes;
	struct slot *slots;
	uint32_t *free_slots; /* a stack of free slot indices */
	uint32_t free_count;
	uint32_t busy; /* slots not free */
	uint64_t next; /* the next stripe to look at */
	struct seen_set seen;
	bool head_warned;
};

/* ---- the set of hashes seen ---- */

static size_t seen_index(const struct seen_set *s, const uint8_t *hash)
{
	uint64_t h;
	memcpy(&h, hash, sizeof(h)); /* SHA-256 bytes are uniform already */
	return (size_t)(h & (s->slots - 1));
}

static int seen_grow(struct seen_set *s)
{
	size_t slots = s->slots ? s->slots * 2 : SEEN_MIN_SLOTS;
	struct seen_set bigger = {
	    .hashes = calloc(slots, ARCHIVE_HASH_BYTES),
	    .used = calloc(slots, sizeof(bool)),
	    .slots = slots,
	};
	if (!bigger.hashes || !bigger.used) {
		free(bigger.hashes);
		free(bigger.used);
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->slots; i++) {
		if (!s->used[i])
			continue;
		size_t j = seen_index(&bigger, s->hashes[i]);
		while (bigger.used[j])
			j = (j + 1) & (slots - 1);
		bigger.used[j] = true;
		memcpy(bigger.hashes[j], s->hashes[i], ARCHIVE_HASH_BYTES);
	}
	bigger.count = s->count;
	free(s->hashes);
	free(s->used);
	*s = bigger;
	return 0;
}

/* 1 when the hash was there, 0 when it was added, -ENOMEM. */
static int seen_add(struct seen_set *s, const uint8_t *hash)
{
	if ((s->count + 1) * 2 > s->slots && seen_grow(s) < 0)
		return -ENOMEM;
	size_t i = seen_index(s, hash);
	while (s->used[i]) {
		if (memcmp(s->hashes[i], hash, ARCHIVE_HASH_BYTES) == 0)
			return 1;
		i = (i + 1) & (s->slots - 1);
	}
	s->used[i] = true;
	memcpy(s->hashes[i], hash, ARCHIVE_HASH_BYTES);
	s->count++;
	return 0;
}

static void seen_free(struct seen_set *s)
{
	free(s->hashes);
	free(s->used);
	memset(s, 0, sizeof(*s));
}

/* ---- slots ---- */

static uint32_t slot_index(const struct run *r, const struct slot *slot)
{
	return (uint32_t)(slot - r->slots);
}

/* The stripe is done (stored, deduplicated, or given up after a failure);
 * its buffer takes the next one. */
static void slot_release(struct run *r, struct slot *slot)
{
	slot->state = SLOT_FREE;
	r->free_slots[r->free_count++] = slot_index(r, slot);
	r->busy--;
	if (!r->failed)
		r->c->stripes_done++;
}

/* Only the first failure is reported; what is in flight still completes. */
static void fail(struct run *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct run *r, int code, const char *fmt, ...)
{
	if (r->failed)
		return;
	r->failed = code < 0 ? code : -EIO;
	char text[ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	error_set(r->err, r->failed, "%s", text);
}

/* Sectors of the stripe inside [0, end). */
static uint32_t sectors_within(const struct run *r, uint64_t stripe, uint64_t end)
{
	uint64_t first = stripe * r->in->stripe_sectors;
	if (first >= end)
		return 0;
	uint64_t left = end - first;
	return left < r->in->stripe_sectors ? (uint32_t)left : r->in->stripe_sectors;
}

/* What lies past the data's end must read as zeros, not as whatever the
 * buffer's previous stripe left there. */
static void zero_tail(struct run *r, struct slot *slot, uint32_t data_sectors)
{
	size_t data = (size_t)data_sectors * SECTOR_SIZE;
	if (data < r->stripe_bytes)
		memset(slot->plain + data, 0, r->stripe_bytes - data);
}

static void source_try(struct run *r, struct slot *slot)
{
	int rc = source_request(r->in->source, slot->stripe, slot->plain);
	if (rc == 0) {
		slot->state = SLOT_READ_SOURCE;
		return;
	}
	/* Refused for now: asked again after one of its reads completes. A
	 * source that refuses with nothing in flight never will. */
	if (rc == -EBUSY && source_busy(r->in->source))
		return;
	fail(r, rc, "I/O error while fetching stripe %" PRIu64 ": from the stripe source: %s",
	     slot->stripe, strerror(-rc));
	slot_release(r, slot);
}

static void start_read(struct run *r, struct slot *slot, uint64_t stripe, enum archive_origin from)
{
	slot->stripe = stripe;
	r->busy++;
	if (from == ARCHIVE_ORIGIN_DISK) {
		uint32_t sectors = sectors_within(r, stripe, r->in->disk_sectors);
		zero_tail(r, slot, sectors);
		slot->iov.iov_base = slot->plain;
		slot->iov.iov_len = (size_t)sectors * SECTOR_SIZE;
		slot->state = SLOT_READ_DISK;
		bdev_add_readv(r->ch, stripe * r->in->stripe_sectors, &slot->iov, 1,
			       slot_index(r, slot));
		return;
	}
	zero_tail(r, slot, sectors_within(r, stripe, stripe_source_sector_count(r->in->source)));
	slot->state = SLOT_SOURCE_WAIT;
	source_try(r, slot);
}

/* Stripes in index order while a buffer is free; those without data are
 * counted as skipped on the way. */
static bool start_reads(struct run *r)
{
	bool started = false;
	while (!r->failed && r->next < r->in->stripe_count && r->free_count > 0) {
		uint64_t stripe = r->next++;
		enum archive_origin from = archive_input_origin(r->in, stripe);
		if (from == ARCHIVE_ORIGIN_NONE) {
			r->c->skipped++;
			r->c->stripes_done++;
			continue;
		}
		struct slot *slot = &r->slots[r->free_slots[--r->free_count]];
		start_read(r, slot, stripe, from);
		started = true;
	}
	return started;
}

static void put_object(struct run *r, struct slot *slot)
{
	char name[ARCHIVE_OBJECT_NAME_SIZE];
	archive_object_name(slot->hash, name);
	slot->state = SLOT_PUT;
	int rc = store_put(r->o->store, name, slot->object, slot->object_len, slot_index(r, slot));
	if (rc < 0) {
		fail(r, rc, "PutObject %s: %s", name, strerror(-rc));
		slot_release(r, slot);
	}
}

/* ---- a stripe read: encode, deduplicate, ask the store ---- */

static void read_done(struct run *r, struct slot *slot, int result, const char *from)
{
	if (r->failed) {
		slot_release(r, slot);
		return;
	}
	if (result < 0) {
		fail(r, result, "I/O error while fetching stripe %" PRIu64 ": from %s: %s",
		     slot->stripe, from, strerror(-result));
		slot_release(r, slot);
		return;
	}
	struct error why = {0};
	size_t cap = archive_object_bound(r->o->codec, r->stripe_bytes);
	int rc = archive_object_encode(r->o->codec, slot->stripe, slot->plain, r->stripe_bytes,
				       slot->object, cap, &slot->object_len, slot->hash, &why);
	if (rc == 0)
		rc = archive_stripe_map_put(r->map, slot->stripe, slot->hash);
	int seen = rc == 0 ? seen_add(&r->seen, slot->hash) : rc;
	if (rc < 0 || seen < 0) {
		fail(r, rc < 0 ? rc : seen, "stripe %" PRIu64 ": %s", slot->stripe,
		     why.text[0] ? why.text : strerror(-(rc < 0 ? rc : seen)));
		slot_release(r, slot);
		return;
	}
	r->c->archived++;
	r->c->bytes_logical +=
	    (uint64_t)sectors_within(r, slot->stripe, r->in->disk_sectors) * SECTOR_SIZE;
	if (slot->state == SLOT_READ_SOURCE)
		r->c->from_source++;
	if (seen == 1) {
		r->c->deduplicated++;
		slot_release(r, slot);
		return;
	}
	r->c->bytes_physical += slot->object_len;
	if (!r->o->check_existing) {
		put_object(r, slot);
		return;
	}
	char name[ARCHIVE_OBJECT_NAME_SIZE];
	archive_object_name(slot->hash, name);
	slot->state = SLOT_HEAD;
	rc = store_head(r->o->store, name, slot_index(r, slot));
	if (rc < 0) {
		fail(r, rc, "HeadObject %s: %s", name, strerror(-rc));
		slot_release(r, slot);
	}
}

static void store_done(struct run *r, struct store_completion *done)
{
	enum slot_state expected = done->op == STORE_PUT ? SLOT_PUT : SLOT_HEAD;
	if (done->tag >= r->o->buffers || r->slots[done->tag].state != expected) {
		log_error("archive: unexpected %s completion (tag %" PRIu64 ")",
			  store_op_name(done->op), done->tag);
		return;
	}
	struct slot *slot = &r->slots[done->tag];
	if (r->failed) {
		slot_release(r, slot);
		return;
	}
	if (done->op == STORE_HEAD) {
		if (done->result == 0) {
			r->c->objects_already_stored++;
			slot_release(r, slot);
			return;
		}
		/* A store that cannot answer HEAD (no permission to read, say)
		 * still takes the object: store it again rather than fail. */
		if (done->result != -ENOENT && !r->head_warned) {
			log_warn("archive: cannot tell whether objects exist (%s); storing them "
				 "anyway",
				 done->error.text[0] ? done->error.text : strerror(-done->result));
			r->head_warned = true;
		}
		put_object(r, slot);
		return;
	}
	if (done->result < 0) {
		fail(r, done->result, "%s",
		     done->error.text[0] ? done->error.text : strerror(-done->result));
		slot_release(r, slot);
		return;
	}
	r->c->objects_uploaded++;
	r->c->bytes_uploaded += slot->object_len;
	slot_release(r, slot);
}

/* ---- polling ---- */

static bool poll_disk(struct run *r)
{
	struct bdev_completion done[POLL_BATCH];
	int n = bdev_poll(r->ch, done, POLL_BATCH);
	for (int i = 0; i < n; i++) {
		if (done[i].id >= r->o->buffers || r->slots[done[i].id].state != SLOT_READ_DISK) {
			log_error("archive: unexpected disk completion %" PRIu64, done[i].id);
			continue;
		}
		read_done(r, &r->slots[done[i].id], done[i].result, "the disk");
	}
	return n > 0;
}

static struct slot *slot_reading_source(struct run *r, uint64_t stripe)
{
	for (uint32_t i = 0; i < r->o->buffers; i++)
		if (r->slots[i].state == SLOT_READ_SOURCE && r->slots[i].stripe == stripe)
			return &r->slots[i];
	return NULL;
}

static bool poll_source(struct run *r)
{
	if (!r->source_opened)
		return false;
	struct source_completion done[POLL_BATCH];
	int n = source_poll(r->in->source, done, POLL_BATCH);
	for (int i = 0; i < n; i++) {
		struct slot *slot = slot_reading_source(r, done[i].stripe);
		if (!slot) {
			log_error("archive: unexpected completion of stripe %" PRIu64
				  " from the stripe source",
				  done[i].stripe);
			continue;
		}
		read_done(r, slot, done[i].result, "the stripe source");
	}
	/* Reads the source refused for now, in stripe order, until it refuses
	 * again. */
	while (!r->failed) {
		struct slot *first = NULL;
		for (uint32_t i = 0; i < r->o->buffers; i++)
			if (r->slots[i].state == SLOT_SOURCE_WAIT &&
			    (!first || r->slots[i].stripe < first->stripe))
				first = &r->slots[i];
		if (!first)
			break;
		source_try(r, first);
		if (first->state != SLOT_READ_SOURCE)
			break;
	}
	return n > 0;
}

static bool poll_store(struct run *r)
{
	struct store_completion done[POLL_BATCH];
	int n = store_poll(r->o->store, done, POLL_BATCH);
	for (int i = 0; i < n; i++) {
		store_done(r, &done[i]);
		free(done[i].body);
	}
	return n > 0;
}

/* After a failure, reads the source had not taken yet are given up. */
static void drop_waiting(struct run *r)
{
	for (uint32_t i = 0; i < r->o->buffers; i++)
		if (r->slots[i].state == SLOT_SOURCE_WAIT)
			slot_release(r, &r->slots[i]);
}

static void sleep_until_woken(struct run *r)
{
	int fds[3] = {bdev_completion_fd(r->ch), store_completion_fd(r->o->store), -1};
	int timeout = IN_FLIGHT_SLEEP_MS;
	if (r->source_opened) {
		fds[2] = source_completion_fd(r->in->source);
		if (fds[2] < 0 && source_busy(r->in->source))
			timeout = RETRY_SUBMIT_MS;
	}
	if (bdev_needs_submit(r->ch) || (bdev_completion_fd(r->ch) < 0 && bdev_busy(r->ch)))
		timeout = RETRY_SUBMIT_MS;
	eventfds_wait(fds, 3, timeout, "archive");
}

/* ---- set-up and the loop ---- */

static int run_setup(struct run *r)
{
	uint32_t n = r->o->buffers;
	size_t object_cap = archive_object_bound(r->o->codec, r->stripe_bytes);
	size_t align = bdev_buffer_alignment(r->in->disk);
	r->slots = calloc(n, sizeof(*r->slots));
	r->free_slots = calloc(n, sizeof(*r->free_slots));
	if (!r->slots || !r->free_slots)
		return error_set(r->err, -ENOMEM, "out of memory for %u stripe buffers", n);
	for (uint32_t i = 0; i < n; i++) {
		r->slots[i].plain = buffer_alloc(align, r->stripe_bytes);
		r->slots[i].object = malloc(object_cap);
		if (!r->slots[i].plain || !r->slots[i].object)
			return error_set(r->err, -ENOMEM, "out of memory for %u stripe buffers", n);
		r->free_slots[r->free_count++] = n - 1 - i; /* slot 0 taken first */
	}
	int rc = bdev_channel_create(r->in->disk, n, &r->ch);
	if (rc < 0)
		return error_set(r->err, rc, "cannot read the disk: %s", strerror(-rc));
	if (r->in->source) {
		rc = source_open(r->in->source);
		if (rc < 0)
			return error_set(r->err, rc, "cannot open the stripe source: %s",
					 strerror(-rc));
		r->source_opened = true;
	}
	return 0;
}

/* Nothing may touch a buffer after this: the channel and the source wait
 * for their reads, and the loop already waited for the store. */
static void run_teardown(struct run *r)
{
	if (r->source_opened)
		source_close(r->in->source);
	if (r->ch)
		bdev_channel_destroy(r->ch);
	for (uint32_t i = 0; r->slots && i < r->o->buffers; i++) {
		buffer_free(r->slots[i].plain);
		free(r->slots[i].object);
	}
	free(r->slots);
	free(r->free_slots);
	seen_free(&r->seen);
}

int archive_pipeline_run(const struct archive_pipeline_options *o, struct archive_stripe_map *map,
			 struct archive_counts *counts, struct error *err)
{
	struct run r = {
	    .o = o,
	    .in = o->input,
	    .map = map,
	    .c = counts,
	    .err = err,
	    .stripe_bytes = (size_t)o->input->stripe_sectors * SECTOR_SIZE,
	};
	memset(counts, 0, sizeof(*counts));
	counts->stripes_total = r.in->stripe_count;
	int rc = run_setup(&r);
	if (rc < 0) {
		run_teardown(&r);
		return rc;
	}
	for (;;) {
		bool moved = start_reads(&r);
		if (bdev_needs_submit(r.ch)) {
			rc = bdev_submit(r.ch);
			if (rc < 0)
				log_warn("archive: submitting disk reads failed: %s; retrying",
					 strerror(-rc));
		}
		moved |= poll_disk(&r);
		moved |= poll_source(&r);
		moved |= poll_store(&r);
		if (r.failed)
			drop_waiting(&r);
		archive_progress_update(o->progress, counts);
		if (r.busy == 0 && (r.failed || r.next >= r.in->stripe_count))
			break;
		if (!moved)
			sleep_until_woken(&r);
	}
	run_teardown(&r);
	return r.failed;
}

/* Where each request of a lazy channel goes: straight to the disk when its
 * stripes are there, to the raw image for a one-stripe read of an unfetched
 * stripe, to the channel's FIFO (after asking the worker for the stripes)
 * when it must wait, or back to the caller with -EIO. */
#include "lazy/lazy_internal.h"

#include "common/common.h"

#include <errno.h>
#include <string.h>

enum range_status { RANGE_COMPLETE, RANGE_PENDING, RANGE_FAILED };

/* Failed anywhere wins over pending: such a request can only fail, so there
 * is no point in waiting for (or fetching) the rest of its stripes. */
static enum range_status range_status(const struct lazy_device *dev, uint64_t first, uint64_t last)
{
	enum range_status status = RANGE_COMPLETE;
	for (uint64_t s = first; s <= last; s++) {
		switch (stripe_state_fetch(dev->state, s)) {
		case STRIPE_FETCHED:
		case STRIPE_NO_SOURCE:
			break;
		case STRIPE_FAILED:
			return RANGE_FAILED;
		case STRIPE_NOT_FETCHED:
		default:
			status = RANGE_PENDING;
			break;
		}
	}
	return status;
}

static bool range_written(const struct lazy_device *dev, uint64_t first, uint64_t last)
{
	for (uint64_t s = first; s <= last; s++)
		if (!stripe_state_written(dev->state, s))
			return false;
	return true;
}

static bool modifies_data(enum lazy_op op)
{
	return op != LAZY_OP_READ;
}

/* Whether a request that changes data may go to the disk now. */
static bool write_allowed(const struct lazy_device *dev, uint64_t first, uint64_t last)
{
	return !dev->track_written || range_written(dev, first, last);
}

static void fail_request(struct lazy_channel *ch, uint64_t id)
{
	bdev_layer_complete(ch->self, id, -EIO);
}

/* A request touching a Failed stripe gets its own result, so front ends
 * can count these apart from device errors (the guest sees an I/O error
 * either way). Stripes past the metadata's also read as Failed: a request
 * there is out of range, a plain -EIO. */
static void fail_on_failed_stripe(struct lazy_channel *ch, const struct lazy_request *r)
{
	bool in_range = r->last_stripe < stripe_state_count(ch->dev->state);
	bdev_layer_complete(ch->self, r->id, in_range ? BDEV_ERR_STRIPE_FAILED : -EIO);
}

/* Ask the worker once per stripe and channel (see sent_set.h). */
static int send_to_worker(struct lazy_channel *ch, uint64_t stripe, enum sent_kind kind)
{
	uint64_t key = sent_key(stripe, kind);
	if (sent_set_contains(&ch->sent, key))
		return 0;
	if (!ch->dev->worker)
		return -ESHUTDOWN;
	int rc = kind == SENT_FETCH ? fetch_worker_request_fetch(ch->dev->worker, stripe)
				    : fetch_worker_request_written(ch->dev->worker, stripe);
	if (rc < 0)
		return rc;
	sent_set_insert(&ch->sent, key);
	return 0;
}

static int request_fetches(struct lazy_channel *ch, uint64_t first, uint64_t last)
{
	for (uint64_t s = first; s <= last; s++) {
		if (stripe_state_ready(ch->dev->state, s))
			continue;
		int rc = send_to_worker(ch, s, SENT_FETCH);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int request_written(struct lazy_channel *ch, uint64_t first, uint64_t last)
{
	for (uint64_t s = first; s <= last; s++) {
		if (stripe_state_written(ch->dev->state, s))
			continue;
		int rc = send_to_worker(ch, s, SENT_WRITTEN);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The messages of a request that leaves the queue need no remembering: its
 * stripes are ready (or failed), and a later request may ask again. */
static void forget_sent(struct lazy_channel *ch, const struct lazy_request *r)
{
	if (ch->sent.count == 0)
		return;
	for (uint64_t s = r->first_stripe; s <= r->last_stripe; s++) {
		sent_set_remove(&ch->sent, sent_key(s, SENT_FETCH));
		sent_set_remove(&ch->sent, sent_key(s, SENT_WRITTEN));
	}
}

static void issue_to_base(struct lazy_channel *ch, const struct lazy_request *r)
{
	switch (r->op) {
	case LAZY_OP_READ:
		bdev_add_readv(ch->base, r->sector, r->iov, r->iovcnt, r->id);
		break;
	case LAZY_OP_WRITE:
		bdev_add_writev(ch->base, r->sector, r->iov, r->iovcnt, r->id);
		break;
	case LAZY_OP_DISCARD:
		bdev_add_discard(ch->base, r->sector, r->sectors, r->id);
		break;
	case LAZY_OP_WRITE_ZEROES:
		bdev_add_write_zeroes(ch->base, r->sector, r->sectors, false, r->id);
		break;
	}
}

static void enqueue(struct lazy_channel *ch, const struct lazy_request *r)
{
	/* Cannot happen: the queue holds the channel depth and bdev.c admits
	 * no more than that. Failing beats overwriting a queued request. */
	if (lazy_queue_full(&ch->queue)) {
		log_error("lazy: request queue full; failing request %llu",
			  (unsigned long long)r->id);
		fail_request(ch, r->id);
		return;
	}
	lazy_queue_push(&ch->queue, r);
}

/* Fills in the stripe range, or returns false for a request past the end of
 * the disk or of the stripes the metadata describes. */
static bool set_range(const struct lazy_device *dev, struct lazy_request *r, uint64_t sectors)
{
	/* bdev.c bounds byte offsets by INT64_MAX, so this cannot wrap. */
	uint64_t end = r->sector + sectors;
	if (end > dev->sectors)
		return false;
	r->first_stripe = r->sector >> dev->shift;
	r->last_stripe = (end - 1) >> dev->shift;
	return r->last_stripe < dev->stripes;
}

static void zero_iov(const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++)
		memset(iov[i].iov_base, 0, iov[i].iov_len);
}

/* A read inside one unfetched stripe with an image: the image holds the
 * stripe's data, so no fetch is needed. Returns false when the read crosses
 * the image end: fetching the stripe (which zero-fills past the image) is
 * then simpler than splitting the caller's iovecs. */
static bool read_from_image(struct lazy_channel *ch, const struct lazy_request *r, uint64_t sectors)
{
	uint64_t image_sectors = ch->dev->image_sectors;
	if (r->sector + sectors <= image_sectors) {
		bdev_add_readv(ch->image, r->sector, r->iov, r->iovcnt, r->id);
		return true;
	}
	if (r->sector >= image_sectors) {
		zero_iov(r->iov, r->iovcnt);
		bdev_layer_complete(ch->self, r->id, 0);
		return true;
	}
	return false;
}

static void admit_read(struct lazy_channel *ch, struct lazy_request *r, uint64_t sectors)
{
	switch (range_status(ch->dev, r->first_stripe, r->last_stripe)) {
	case RANGE_COMPLETE:
		bdev_add_readv(ch->base, r->sector, r->iov, r->iovcnt, r->id);
		return;
	case RANGE_FAILED:
		log_debug("lazy: read at sector %llu touches a failed stripe",
			  (unsigned long long)r->sector);
		fail_on_failed_stripe(ch, r);
		return;
	case RANGE_PENDING:
		break;
	}
	if (ch->image && r->first_stripe == r->last_stripe && read_from_image(ch, r, sectors))
		return;
	if (ch->image && r->first_stripe != r->last_stripe)
		log_debug("lazy: cross-stripe read at sector %llu fetches stripes %llu-%llu",
			  (unsigned long long)r->sector, (unsigned long long)r->first_stripe,
			  (unsigned long long)r->last_stripe);
	int rc = request_fetches(ch, r->first_stripe, r->last_stripe);
	if (rc < 0) {
		log_debug("lazy: cannot request a fetch: %s", strerror(-rc));
		fail_request(ch, r->id);
		return;
	}
	enqueue(ch, r);
}

/* Writes, discards and write-zeroes: never to the image, and only once the
 * stripe is in the disk: a later fetch would overwrite the guest's data. */
static void admit_write(struct lazy_channel *ch, const struct lazy_request *r)
{
	const struct lazy_device *dev = ch->dev;
	enum range_status status = range_status(dev, r->first_stripe, r->last_stripe);
	if (status == RANGE_FAILED) {
		log_debug("lazy: write at sector %llu touches a failed stripe",
			  (unsigned long long)r->sector);
		fail_on_failed_stripe(ch, r);
		return;
	}
	if (status == RANGE_COMPLETE && write_allowed(dev, r->first_stripe, r->last_stripe)) {
		issue_to_base(ch, r);
		return;
	}
	int rc = request_fetches(ch, r->first_stripe, r->last_stripe);
	if (rc == 0 && dev->track_written)
		rc = request_written(ch, r->first_stripe, r->last_stripe);
	if (rc < 0) {
		log_debug("lazy: cannot reach the fetch worker: %s", strerror(-rc));
		fail_request(ch, r->id);
		return;
	}
	enqueue(ch, r);
}

void lazy_add_rw(void *lch, bool write, uint64_t sector, const struct iovec *iov, int iovcnt,
		 uint64_t bytes, uint64_t id)
{
	struct lazy_channel *ch = lch;
	struct lazy_request r = {
	    .op = write ? LAZY_OP_WRITE : LAZY_OP_READ,
	    .iovcnt = iovcnt,
	    .iov = iov,
	    .sector = sector,
	    .id = id,
	};
	/* A trailing partial sector still touches that sector's stripe. */
	uint64_t sectors = (bytes + SECTOR_SIZE - 1) >> SECTOR_SHIFT;
	if (!set_range(ch->dev, &r, sectors)) {
		log_debug("lazy: request at sector %llu (%llu sectors) is past the end",
			  (unsigned long long)sector, (unsigned long long)sectors);
		fail_request(ch, id);
		return;
	}
	if (write)
		admit_write(ch, &r);
	else
		admit_read(ch, &r, sectors);
}

void lazy_add_fallocate(void *lch, bool punch_hole, uint64_t sector, uint64_t count, uint64_t id)
{
	struct lazy_channel *ch = lch;
	struct lazy_request r = {
	    .op = punch_hole ? LAZY_OP_DISCARD : LAZY_OP_WRITE_ZEROES,
	    .sector = sector,
	    .sectors = count,
	    .id = id,
	};
	if (!set_range(ch->dev, &r, count)) {
		log_debug("lazy: request at sector %llu (%llu sectors) is past the end",
			  (unsigned long long)sector, (unsigned long long)count);
		fail_request(ch, id);
		return;
	}
	admit_write(ch, &r);
}

/* Does not wait for queued writes: they have not completed, so a flush need
 * not cover them (virtio's rule: a flush covers the writes completed before
 * it was submitted). */
void lazy_add_flush(void *lch, uint64_t id)
{
	struct lazy_channel *ch = lch;
	bdev_add_flush(ch->base, id);
}

void lazy_process_queue(struct lazy_channel *ch)
{
	const struct lazy_device *dev = ch->dev;
	bool issued = false;
	const struct lazy_request *head;
	while ((head = lazy_queue_head(&ch->queue))) {
		enum range_status status = range_status(dev, head->first_stripe, head->last_stripe);
		if (status == RANGE_PENDING)
			break;
		if (status == RANGE_COMPLETE && modifies_data(head->op) &&
		    !write_allowed(dev, head->first_stripe, head->last_stripe))
			break;
		struct lazy_request r = *head;
		lazy_queue_pop(&ch->queue);
		forget_sent(ch, &r);
		if (status == RANGE_FAILED) {
			log_debug("lazy: queued request at sector %llu touches a failed stripe",
				  (unsigned long long)r.sector);
			fail_on_failed_stripe(ch, &r);
			continue;
		}
		issue_to_base(ch, &r);
		issued = true;
	}
	/* Nothing waits any more: drop keys left by requests that failed
	 * before they were queued. */
	if (lazy_queue_empty(&ch->queue) && ch->sent.count)
		sent_set_clear(&ch->sent);
	if (issued) {
		/* What the kernel did not take stays queued in the disk channel,
		 * which retries it and completes it exactly once: failing the
		 * requests here would complete them twice. */
		int rc = bdev_submit(ch->base);
		if (rc < 0)
			log_debug("lazy: disk submit: %s (retried)", strerror(-rc));
	}
}

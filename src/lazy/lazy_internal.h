/* What the lazy device's files share: the device context (copied into the
 * bdev by bdev_layer_open) and the per-channel state. */
#ifndef UBIBLK_LAZY_INTERNAL_H
#define UBIBLK_LAZY_INTERNAL_H

#include "lazy/channel_wakeup.h"
#include "lazy/lazy.h"
#include "lazy/lazy_queue.h"
#include "lazy/sent_set.h"

#include <stdbool.h>
#include <stdint.h>

struct lazy_device {
	struct bdev *base;
	struct bdev *image; /* NULL: every unfetched read fetches */
	struct stripe_state *state;
	struct fetch_worker *worker; /* NULL: requests needing it fail */
	bool track_written;
	uint8_t shift;
	uint64_t stripes;	/* stripes the state knows: requests beyond fail */
	uint64_t sectors;	/* the disk's */
	uint64_t image_sectors; /* 0 without an image */
};

struct lazy_channel {
	const struct lazy_device *dev;
	struct bdev_channel *self; /* the channel the caller sees */
	struct bdev_channel *base;
	struct bdev_channel *image; /* NULL without an image */
	struct lazy_queue queue;
	/* Messages already sent to the worker for requests in the queue; keys
	 * from sent_key(). */
	struct sent_set sent;
	struct lazy_wakeup wakeup;
	bool subscribed;
};

enum sent_kind { SENT_FETCH = 0, SENT_WRITTEN = 1 };

static inline uint64_t sent_key(uint64_t stripe, enum sent_kind kind)
{
	return stripe << 1 | (uint64_t)kind;
}

/* lazy_request.c: admitting requests (bdev_add_* of a lazy channel) and
 * issuing queued ones. */
void lazy_add_rw(void *lch, bool write, uint64_t sector, const struct iovec *iov, int iovcnt,
		 uint64_t bytes, uint64_t id);
void lazy_add_flush(void *lch, uint64_t id);
void lazy_add_fallocate(void *lch, bool punch_hole, uint64_t sector, uint64_t count, uint64_t id);
/* Issues every queued request whose stripes are ready, in FIFO order, and
 * fails those whose stripes failed; stops at the first that must wait. */
void lazy_process_queue(struct lazy_channel *ch);

#endif

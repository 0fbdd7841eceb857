/* The lazy device as a stacked bdev: opening it, and the channel life cycle,
 * submit and poll. Where requests go is lazy_request.c. */
#include "lazy/lazy_internal.h"

#include "common/common.h"

#include <errno.h>
#include <stdlib.h>

static void lazy_channel_free(struct lazy_channel *ch)
{
	/* The worker must stop writing to the notify fd before it is closed
	 * (it may be the disk channel's eventfd). */
	if (ch->subscribed)
		fetch_worker_unsubscribe(ch->dev->worker, ch->wakeup.notify_fd);
	bdev_channel_destroy(ch->image);
	bdev_channel_destroy(ch->base);
	lazy_wakeup_fini(&ch->wakeup);
	lazy_queue_fini(&ch->queue);
	sent_set_fini(&ch->sent);
	free(ch);
}

static int lazy_channel_create(void *layer, struct bdev_channel *self, uint32_t depth, void **out)
{
	const struct lazy_device *dev = layer;
	struct lazy_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->dev = dev;
	ch->self = self;
	ch->wakeup = (struct lazy_wakeup){.notify_fd = -1, .own_fd = -1, .epoll_fd = -1};
	int rc = bdev_channel_create(dev->base, depth, &ch->base);
	if (rc == 0 && dev->image)
		rc = bdev_channel_create(dev->image, depth, &ch->image);
	if (rc == 0)
		rc = lazy_queue_init(&ch->queue, depth);
	if (rc == 0)
		rc = sent_set_init(&ch->sent, depth);
	if (rc == 0)
		rc = lazy_wakeup_init(&ch->wakeup, bdev_completion_fd(ch->base),
				      ch->image ? bdev_completion_fd(ch->image) : -1);
	if (rc == 0 && dev->worker) {
		rc = fetch_worker_subscribe(dev->worker, ch->wakeup.notify_fd);
		ch->subscribed = rc == 0;
	}
	if (rc < 0) {
		lazy_channel_free(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

static void lazy_channel_destroy(void *lch)
{
	/* Queued requests were never issued: dropping them touches no buffer. */
	lazy_channel_free(lch);
}

static int lazy_submit(void *lch)
{
	struct lazy_channel *ch = lch;
	int image_rc = ch->image ? bdev_submit(ch->image) : 0;
	int rc = bdev_submit(ch->base);
	return image_rc < 0 ? image_rc : rc;
}

static int poll_once(struct lazy_channel *ch, struct bdev_completion *out, int max)
{
	lazy_process_queue(ch);
	int n = bdev_poll(ch->base, out, max);
	if (ch->image)
		n += bdev_poll(ch->image, out + n, max - n);
	return n;
}

static int lazy_poll(void *lch, struct bdev_completion *out, int max)
{
	struct lazy_channel *ch = lch;
	int n = poll_once(ch, out, max);
	/* Only when there was nothing: draining costs system calls, and a
	 * caller that got something polls again before it sleeps. Looking
	 * again after the drain catches whatever signalled in between. */
	if (n == 0 && lazy_wakeup_gathers(&ch->wakeup)) {
		lazy_wakeup_drain(&ch->wakeup);
		n = poll_once(ch, out, max);
	}
	return n;
}

static int lazy_completion_fd(const void *lch)
{
	const struct lazy_channel *ch = lch;
	return lazy_wakeup_fd(&ch->wakeup);
}

/* Queued requests need no submit: they wait for the worker, whose
 * notification wakes the channel. */
static bool lazy_needs_submit(const void *lch)
{
	const struct lazy_channel *ch = lch;
	return bdev_needs_submit(ch->base) || (ch->image && bdev_needs_submit(ch->image));
}

static const struct bdev_layer_ops lazy_layer_ops = {
    .channel_create = lazy_channel_create,
    .channel_destroy = lazy_channel_destroy,
    .add_rw = lazy_add_rw,
    .add_flush = lazy_add_flush,
    .add_fallocate = lazy_add_fallocate,
    .submit = lazy_submit,
    .poll = lazy_poll,
    .completion_fd = lazy_completion_fd,
    .needs_submit = lazy_needs_submit,
};

int lazy_bdev_open(const struct lazy_options *opts, struct bdev **out)
{
	if (!opts || !opts->base || !opts->state)
		return -EINVAL;
	struct lazy_device dev = {
	    .base = opts->base,
	    .image = opts->image,
	    .state = opts->state,
	    .worker = opts->worker,
	    .track_written = opts->track_written,
	    .shift = stripe_state_shift(opts->state),
	    .stripes = stripe_state_count(opts->state),
	    .sectors = bdev_sector_count(opts->base),
	    .image_sectors = opts->image ? bdev_sector_count(opts->image) : 0,
	};
	if (dev.shift >= 64)
		return -EINVAL;
	uint64_t needed = dev.sectors ? ((dev.sectors - 1) >> dev.shift) + 1 : 0;
	if (dev.stripes < needed)
		log_warn("lazy: the metadata describes %llu stripes but the disk has %llu; "
			 "requests past stripe %llu will fail",
			 (unsigned long long)dev.stripes, (unsigned long long)needed,
			 (unsigned long long)dev.stripes);
	return bdev_layer_open(&lazy_layer_ops, &dev, sizeof(dev), opts->base, out);
}

/* Stacked devices: a layer's channel is a bdev_channel like any engine's, so
 * bdev.c's common checks and accounting apply to it, and the front end uses a
 * lazy or crypt device exactly like a file. This file adapts the engine ops
 * table to the layer ops table: byte offsets back to sectors, the layer's
 * context and channel state as opaque pointers. */
#include "bdev/bdev_internal.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct layer_bdev {
	struct bdev dev; /* first: bdev_close frees the whole allocation */
	const struct bdev_layer_ops *lops;
	max_align_t context[]; /* the layer's copy of its context */
};

struct layer_channel {
	struct bdev_channel common;
	const struct bdev_layer_ops *lops;
	void *state;
};

static struct layer_channel *to_layer_channel(struct bdev_channel *ch)
{
	return (struct layer_channel *)ch;
}

static const struct layer_channel *to_const_layer_channel(const struct bdev_channel *ch)
{
	return (const struct layer_channel *)ch;
}

static int layer_channel_create(struct bdev *dev, uint32_t depth, struct bdev_channel **out)
{
	struct layer_bdev *ldev = (struct layer_bdev *)dev;
	struct layer_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	int rc = bdev_channel_init(&ch->common, dev, depth);
	if (rc < 0) {
		free(ch);
		return rc;
	}
	ch->lops = ldev->lops;
	rc = ldev->lops->channel_create(ldev->context, &ch->common, depth, &ch->state);
	if (rc < 0) {
		bdev_channel_fini(&ch->common);
		free(ch);
		return rc;
	}
	*out = &ch->common;
	return 0;
}

static void layer_channel_destroy(struct bdev_channel *common)
{
	struct layer_channel *ch = to_layer_channel(common);
	ch->lops->channel_destroy(ch->state);
	bdev_channel_fini(&ch->common);
	free(ch);
}

static void layer_add_rw(struct bdev_channel *common, bool write, uint64_t offset,
			 const struct iovec *iov, int iovcnt, uint64_t id)
{
	struct layer_channel *ch = to_layer_channel(common);
	/* bdev.c has checked that the sum does not overflow. */
	uint64_t bytes = 0;
	for (int i = 0; i < iovcnt; i++)
		bytes += iov[i].iov_len;
	ch->lops->add_rw(ch->state, write, offset >> SECTOR_SHIFT, iov, iovcnt, bytes, id);
}

static void layer_add_flush(struct bdev_channel *common, uint64_t id)
{
	struct layer_channel *ch = to_layer_channel(common);
	ch->lops->add_flush(ch->state, id);
}

static void layer_add_fallocate(struct bdev_channel *common, int mode, uint64_t offset,
				uint64_t len, uint64_t id)
{
	struct layer_channel *ch = to_layer_channel(common);
	ch->lops->add_fallocate(ch->state, (mode & FALLOC_FL_PUNCH_HOLE) != 0,
				offset >> SECTOR_SHIFT, len >> SECTOR_SHIFT, id);
}

static int layer_submit(struct bdev_channel *common)
{
	struct layer_channel *ch = to_layer_channel(common);
	return ch->lops->submit(ch->state);
}

/* The layer's own completions, then whatever it completed through
 * bdev_layer_complete() while polling: returning those now matters, because a
 * caller that got fewer than `max` goes to sleep on the completion fd, which
 * such completions never signal. */
static int layer_poll(struct bdev_channel *common, struct bdev_completion *out, int max)
{
	struct layer_channel *ch = to_layer_channel(common);
	int n = ch->lops->poll(ch->state, out, max);
	common->outstanding -= (uint32_t)n;
	struct completion_fifo_entry e;
	while (n < max && completion_fifo_pop(&common->done, &e)) {
		out[n].id = e.id;
		out[n].result = e.result;
		if (e.counted)
			common->outstanding--;
		n++;
	}
	return n;
}

static int layer_completion_fd(const struct bdev_channel *common)
{
	const struct layer_channel *ch = to_const_layer_channel(common);
	return ch->lops->completion_fd(ch->state);
}

static bool layer_needs_submit(const struct bdev_channel *common)
{
	const struct layer_channel *ch = to_const_layer_channel(common);
	return ch->lops->needs_submit && ch->lops->needs_submit(ch->state);
}

static void layer_device_close(struct bdev *dev)
{
	struct layer_bdev *ldev = (struct layer_bdev *)dev;
	if (ldev->lops->destroy)
		ldev->lops->destroy(ldev->context);
}

static const struct bdev_engine_ops layer_engine_ops = {
    .channel_create = layer_channel_create,
    .channel_destroy = layer_channel_destroy,
    .add_rw = layer_add_rw,
    .add_flush = layer_add_flush,
    .add_fallocate = layer_add_fallocate,
    .submit = layer_submit,
    .poll = layer_poll,
    .completion_fd = layer_completion_fd,
    .needs_submit = layer_needs_submit,
    .device_close = layer_device_close,
};

int bdev_layer_open(const struct bdev_layer_ops *ops, const void *layer, size_t layer_size,
		    const struct bdev *below, struct bdev **out)
{
	if (!ops || !below || (layer_size && !layer) || !ops->channel_create ||
	    !ops->channel_destroy || !ops->add_rw || !ops->add_flush || !ops->add_fallocate ||
	    !ops->submit || !ops->poll || !ops->completion_fd)
		return -EINVAL;
	if (layer_size > SIZE_MAX - sizeof(struct layer_bdev))
		return -ENOMEM;
	struct layer_bdev *ldev = calloc(1, sizeof(*ldev) + layer_size);
	if (!ldev)
		return -ENOMEM;
	if (layer_size)
		memcpy(ldev->context, layer, layer_size);
	ldev->lops = ops;
	struct bdev *dev = &ldev->dev;
	dev->ops = &layer_engine_ops;
	dev->path = NULL;
	dev->file_fd = -1;
	dev->engine = below->engine;
	dev->read_only = below->read_only;
	dev->direct = below->direct;
	dev->write_through = below->write_through;
	dev->supports_discard = below->supports_discard;
	dev->queue_depth = below->queue_depth;
	dev->alignment = below->alignment;
	dev->sectors = below->sectors;
	*out = dev;
	return 0;
}

void bdev_layer_complete(struct bdev_channel *ch, uint64_t id, int result)
{
	bdev_channel_complete(ch, id, result);
}

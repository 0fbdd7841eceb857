/* Null engine: every operation succeeds at the next bdev_poll() without
 * touching buffers or storage. Benchmarks use it to measure the front end
 * alone, so an operation costs one FIFO push and one pop. */
#include "bdev/bdev_internal.h"

#include <errno.h>
#include <stdlib.h>

static int null_channel_create(struct bdev *dev, uint32_t depth, struct bdev_channel **out)
{
	struct bdev_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	int rc = bdev_channel_init(ch, dev, depth);
	if (rc < 0) {
		free(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

static void null_channel_destroy(struct bdev_channel *ch)
{
	bdev_channel_fini(ch);
	free(ch);
}

static void null_add_rw(struct bdev_channel *ch, bool write, uint64_t offset,
			const struct iovec *iov, int iovcnt, uint64_t id)
{
	bdev_channel_complete(ch, id, 0);
}

static void null_add_flush(struct bdev_channel *ch, uint64_t id)
{
	bdev_channel_complete(ch, id, 0);
}

static void null_add_fallocate(struct bdev_channel *ch, int mode, uint64_t offset, uint64_t len,
			       uint64_t id)
{
	bdev_channel_complete(ch, id, 0);
}

const struct bdev_engine_ops bdev_null_ops = {
    .channel_create = null_channel_create,
    .channel_destroy = null_channel_destroy,
    .add_rw = null_add_rw,
    .add_flush = null_add_flush,
    .add_fallocate = null_add_fallocate,
};

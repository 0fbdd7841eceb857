/* Sync engine: each operation runs to completion inside bdev_add_*, with
 * positional vectored system calls; bdev_poll() hands out the results. For
 * filesystems or setups where io_uring is unavailable or slower. */
#include "bdev/bdev_internal.h"
#include "bdev/iov_cursor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

struct sync_channel {
	struct bdev_channel base;
	int fd;
};

static struct sync_channel *to_sync(struct bdev_channel *ch)
{
	return (struct sync_channel *)ch;
}

static int sync_channel_create(struct bdev *dev, uint32_t depth, struct bdev_channel **out)
{
	struct sync_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	int rc = bdev_channel_init(&ch->base, dev, depth);
	if (rc < 0) {
		free(ch);
		return rc;
	}
	ch->fd = bdev_open_channel_fd(dev);
	if (ch->fd < 0) {
		rc = ch->fd;
		bdev_channel_fini(&ch->base);
		free(ch);
		return rc;
	}
	*out = &ch->base;
	return 0;
}

static void sync_channel_destroy(struct bdev_channel *base)
{
	struct sync_channel *ch = to_sync(base);
	close(ch->fd);
	bdev_channel_fini(&ch->base);
	free(ch);
}

/* Transfers every byte or fails: reaching end of file first is -EIO. */
static int transfer(int fd, bool write, uint64_t offset, const struct iovec *iov, int iovcnt)
{
	struct iov_cursor cursor;
	iov_cursor_init(&cursor, iov, iovcnt);
	for (;;) {
		const struct iovec *step;
		int step_cnt;
		iov_cursor_pending(&cursor, &step, &step_cnt);
		ssize_t n = write ? pwritev(fd, step, step_cnt, (off_t)offset)
				  : preadv(fd, step, step_cnt, (off_t)offset);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		if (iov_cursor_advance(&cursor, (size_t)n))
			return 0;
		offset += (uint64_t)n;
	}
}

static void sync_add_rw(struct bdev_channel *base, bool write, uint64_t offset,
			const struct iovec *iov, int iovcnt, uint64_t id)
{
	bdev_channel_complete(base, id, transfer(to_sync(base)->fd, write, offset, iov, iovcnt));
}

static void sync_add_flush(struct bdev_channel *base, uint64_t id)
{
	/* Issued even with O_SYNC: with nothing dirty fsync returns at once,
	 * and this engine stays the plain one the others are checked against. */
	int rc = fsync(to_sync(base)->fd) < 0 ? -errno : 0;
	bdev_channel_complete(base, id, rc);
}

static void sync_add_fallocate(struct bdev_channel *base, int mode, uint64_t offset, uint64_t len,
			       uint64_t id)
{
	int rc;
	do
		rc = fallocate(to_sync(base)->fd, mode, (off_t)offset, (off_t)len) < 0 ? -errno : 0;
	while (rc == -EINTR);
	bdev_channel_complete(base, id, rc);
}

const struct bdev_engine_ops bdev_sync_ops = {
    .channel_create = sync_channel_create,
    .channel_destroy = sync_channel_destroy,
    .add_rw = sync_add_rw,
    .add_flush = sync_add_flush,
    .add_fallocate = sync_add_fallocate,
};

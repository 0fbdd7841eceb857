/* Channel front door: the checks every engine needs, then one indirect call
 * into the engine. Accounting lives here too, so that depth, busy() and the
 * order of completions mean the same thing for every engine. */
#include "bdev/bdev_internal.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>

/* Byte offsets are loff_t in the kernel: anything beyond INT64_MAX is refused
 * up front rather than wrapped. */
#define MAX_BYTE_OFFSET ((uint64_t)INT64_MAX)

int bdev_channel_init(struct bdev_channel *ch, const struct bdev *dev, uint32_t depth)
{
	ch->ops = dev->ops;
	ch->dev = dev;
	ch->depth = depth;
	ch->outstanding = 0;
	return completion_fifo_init(&ch->done, depth);
}

void bdev_channel_fini(struct bdev_channel *ch)
{
	completion_fifo_fini(&ch->done);
}

int bdev_channel_create(struct bdev *dev, uint32_t depth, struct bdev_channel **out)
{
	if (depth == 0)
		depth = dev->queue_depth;
	if (depth == 0 || depth > BDEV_MAX_DEPTH)
		return -EINVAL;
	return dev->ops->channel_create(dev, depth, out);
}

void bdev_channel_destroy(struct bdev_channel *ch)
{
	if (ch)
		ch->ops->channel_destroy(ch);
}

/* A failure found before the operation was admitted: it does not take a
 * place in the depth. */
static void reject(struct bdev_channel *ch, uint64_t id, int result)
{
	completion_fifo_push(&ch->done, id, result, false);
}

static bool admit(struct bdev_channel *ch)
{
	if (ch->outstanding >= ch->depth)
		return false;
	ch->outstanding++;
	return true;
}

/* Byte range [*offset, *offset + len) from sectors, or false when it does not
 * fit a file offset. */
static bool byte_range(uint64_t sector, uint64_t len, uint64_t *offset)
{
	if (sector > (MAX_BYTE_OFFSET >> SECTOR_SHIFT))
		return false;
	*offset = sector << SECTOR_SHIFT;
	return len <= MAX_BYTE_OFFSET - *offset;
}

static bool iov_total(const struct iovec *iov, int iovcnt, uint64_t *total)
{
	uint64_t sum = 0;
	for (int i = 0; i < iovcnt; i++)
		if (u64_add_overflows(sum, iov[i].iov_len, &sum))
			return false;
	*total = sum;
	return true;
}

static void add_rw(struct bdev_channel *ch, bool write, uint64_t sector, const struct iovec *iov,
		   int iovcnt, uint64_t id)
{
	uint64_t total, offset;
	if (iovcnt < 0 || !iov_total(iov, iovcnt, &total) || !byte_range(sector, total, &offset)) {
		reject(ch, id, -EINVAL);
		return;
	}
	if (write && ch->dev->read_only) {
		reject(ch, id, -EBADF);
		return;
	}
	if (!admit(ch)) {
		reject(ch, id, -EAGAIN);
		return;
	}
	if (total == 0) {
		bdev_channel_complete(ch, id, 0);
		return;
	}
	ch->ops->add_rw(ch, write, offset, iov, iovcnt, id);
}

void bdev_add_readv(struct bdev_channel *ch, uint64_t sector, const struct iovec *iov, int iovcnt,
		    uint64_t id)
{
	add_rw(ch, false, sector, iov, iovcnt, id);
}

void bdev_add_writev(struct bdev_channel *ch, uint64_t sector, const struct iovec *iov, int iovcnt,
		     uint64_t id)
{
	add_rw(ch, true, sector, iov, iovcnt, id);
}

void bdev_add_flush(struct bdev_channel *ch, uint64_t id)
{
	if (!admit(ch)) {
		reject(ch, id, -EAGAIN);
		return;
	}
	ch->ops->add_flush(ch, id);
}

static void add_fallocate(struct bdev_channel *ch, int mode, uint64_t sector, uint64_t count,
			  uint64_t id)
{
	uint64_t offset;
	if (count > (MAX_BYTE_OFFSET >> SECTOR_SHIFT) ||
	    !byte_range(sector, count << SECTOR_SHIFT, &offset)) {
		reject(ch, id, -EINVAL);
		return;
	}
	if (ch->dev->read_only) {
		reject(ch, id, -EBADF);
		return;
	}
	if (!admit(ch)) {
		reject(ch, id, -EAGAIN);
		return;
	}
	if (count == 0) {
		bdev_channel_complete(ch, id, 0);
		return;
	}
	ch->ops->add_fallocate(ch, mode, offset, count << SECTOR_SHIFT, id);
}

void bdev_add_discard(struct bdev_channel *ch, uint64_t sector, uint64_t count, uint64_t id)
{
	add_fallocate(ch, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, sector, count, id);
}

void bdev_add_write_zeroes(struct bdev_channel *ch, uint64_t sector, uint64_t count, bool unmap,
			   uint64_t id)
{
	/* Both modes read back zeroes; on a block device punching a hole is a
	 * zeroing discard, never one that may leave stale data. */
	int mode = unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE;
	add_fallocate(ch, mode | FALLOC_FL_KEEP_SIZE, sector, count, id);
}

int bdev_submit(struct bdev_channel *ch)
{
	return ch->ops->submit ? ch->ops->submit(ch) : 0;
}

int bdev_poll(struct bdev_channel *ch, struct bdev_completion *out, int max)
{
	int n = 0;
	struct completion_fifo_entry e;
	while (n < max && completion_fifo_pop(&ch->done, &e)) {
		out[n].id = e.id;
		out[n].result = e.result;
		if (e.counted)
			ch->outstanding--;
		n++;
	}
	/* Called even when `out` is full: the engine may owe the kernel a
	 * retried submission. */
	if (ch->ops->poll && max >= 0)
		n += ch->ops->poll(ch, out + n, max - n);
	return n;
}

bool bdev_busy(const struct bdev_channel *ch)
{
	return ch->outstanding > 0 || completion_fifo_count(&ch->done) > 0;
}

bool bdev_needs_submit(const struct bdev_channel *ch)
{
	return ch->ops->needs_submit && ch->ops->needs_submit(ch);
}

int bdev_completion_fd(const struct bdev_channel *ch)
{
	return ch->ops->completion_fd ? ch->ops->completion_fd(ch) : -1;
}

bool bdev_iov_is_direct_aligned(const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & (SECTOR_SIZE - 1))
			return false;
	return true;
}

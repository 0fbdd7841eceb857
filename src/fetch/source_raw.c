/* The raw source: stripes read from a plaintext image through a bdev channel
 * the worker opens on its own thread. The none source (no image at all) lives
 * here too: it is the raw source's degenerate case, zero sectors. */
#include "fetch/source_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

/* Reads in flight never exceed the worker's stripe buffers; twice that
 * leaves room for the wrapper sources the tests stack on top. */
#define RAW_CHANNEL_DEPTH (2u * FETCH_MAX_CONCURRENT)
#define RAW_POLL_BATCH	  32

/* A read in flight. bdev needs the iovec until the completion, and the
 * entry's index is the bdev id, mapped back to the stripe on completion. */
struct raw_read {
	bool in_use;
	uint64_t stripe;
	struct iovec iov;
};

struct raw_source {
	struct stripe_source base;
	struct bdev *image; /* borrowed */
	struct bdev_channel *ch;
	struct raw_read reads[RAW_CHANNEL_DEPTH];
};

static struct raw_source *to_raw(struct stripe_source *src)
{
	return (struct raw_source *)src;
}

static const struct raw_source *to_raw_const(const struct stripe_source *src)
{
	return (const struct raw_source *)src;
}

static int raw_open(struct stripe_source *src)
{
	struct raw_source *raw = to_raw(src);
	if (!raw->image || raw->ch)
		return 0;
	return bdev_channel_create(raw->image, RAW_CHANNEL_DEPTH, &raw->ch);
}

static void raw_close(struct stripe_source *src)
{
	struct raw_source *raw = to_raw(src);
	bdev_channel_destroy(raw->ch);
	raw->ch = NULL;
	for (unsigned i = 0; i < RAW_CHANNEL_DEPTH; i++)
		raw->reads[i].in_use = false;
}

static struct raw_read *free_read(struct raw_source *raw)
{
	for (unsigned i = 0; i < RAW_CHANNEL_DEPTH; i++)
		if (!raw->reads[i].in_use)
			return &raw->reads[i];
	return NULL;
}

static int raw_request(struct stripe_source *src, uint64_t stripe, void *buf)
{
	struct raw_source *raw = to_raw(src);
	uint32_t sectors = source_stripe_data_sectors(src, stripe);
	if (sectors == 0)
		return -EINVAL;
	if (!raw->ch)
		return -ENOTCONN;
	struct raw_read *read = free_read(raw);
	if (!read)
		return -EBUSY;
	/* A partial last stripe: the fetcher writes the whole disk stripe, so
	 * what lies past the image end must read as zeroes, not as whatever an
	 * earlier fetch left in this reused buffer. */
	size_t data_bytes = (size_t)sectors * SECTOR_SIZE;
	size_t stripe_bytes = (size_t)src->stripe_sectors * SECTOR_SIZE;
	memset((char *)buf + data_bytes, 0, stripe_bytes - data_bytes);
	read->in_use = true;
	read->stripe = stripe;
	read->iov.iov_base = buf;
	read->iov.iov_len = data_bytes;
	bdev_add_readv(raw->ch, stripe * src->stripe_sectors, &read->iov, 1,
		       (uint64_t)(read - raw->reads));
	/* The read now completes exactly once through poll, even when the
	 * kernel did not take it yet (bdev retries the submission). */
	int rc = bdev_submit(raw->ch);
	if (rc < 0)
		log_warn("fetch: submitting the read of stripe %llu from the image failed: %s; "
			 "retrying",
			 (unsigned long long)stripe, strerror(-rc));
	return 0;
}

static int raw_poll(struct stripe_source *src, struct source_completion *out, int max)
{
	struct raw_source *raw = to_raw(src);
	if (!raw->ch || max <= 0)
		return 0;
	struct bdev_completion done[RAW_POLL_BATCH];
	int n = bdev_poll(raw->ch, done, max < RAW_POLL_BATCH ? max : RAW_POLL_BATCH);
	int got = 0;
	for (int i = 0; i < n; i++) {
		if (done[i].id >= RAW_CHANNEL_DEPTH || !raw->reads[done[i].id].in_use) {
			log_error("fetch: unexpected completion %llu from the image",
				  (unsigned long long)done[i].id);
			continue;
		}
		struct raw_read *read = &raw->reads[done[i].id];
		read->in_use = false;
		out[got].stripe = read->stripe;
		out[got].result = done[i].result;
		got++;
	}
	return got;
}

static bool raw_busy(const struct stripe_source *src)
{
	const struct raw_source *raw = to_raw_const(src);
	return raw->ch && bdev_busy(raw->ch);
}

static int raw_completion_fd(const struct stripe_source *src)
{
	const struct raw_source *raw = to_raw_const(src);
	return raw->ch ? bdev_completion_fd(raw->ch) : -1;
}

static void raw_destroy(struct stripe_source *src)
{
	raw_close(src);
	free(src);
}

static const struct stripe_source_ops raw_ops = {
    .open = raw_open,
    .close = raw_close,
    .request = raw_request,
    .poll = raw_poll,
    .busy = raw_busy,
    .completion_fd = raw_completion_fd,
    .destroy = raw_destroy,
};

static int raw_create(struct bdev *image, uint32_t stripe_sectors, struct stripe_source **out)
{
	if (!is_power_of_two(stripe_sectors))
		return -EINVAL;
	struct raw_source *raw = calloc(1, sizeof(*raw));
	if (!raw)
		return -ENOMEM;
	source_init(&raw->base, &raw_ops, stripe_sectors, image ? bdev_sector_count(image) : 0);
	raw->image = image;
	*out = &raw->base;
	return 0;
}

int stripe_source_raw(struct bdev *image, uint32_t stripe_sectors, struct stripe_source **out)
{
	if (!image)
		return -EINVAL;
	return raw_create(image, stripe_sectors, out);
}

int stripe_source_none(uint32_t stripe_sectors, struct stripe_source **out)
{
	return raw_create(NULL, stripe_sectors, out);
}

/* The public stripe-source calls and the worker's dispatch into a source's
 * ops table. */
#include "fetch/source_internal.h"

#include <errno.h>
#include <stddef.h>

void source_init(struct stripe_source *src, const struct stripe_source_ops *ops,
		 uint32_t stripe_sectors, uint64_t sectors)
{
	src->ops = ops;
	src->stripe_sectors = stripe_sectors;
	src->sectors = sectors;
}

uint64_t source_stripe_count(const struct stripe_source *src)
{
	return src->sectors / src->stripe_sectors + (src->sectors % src->stripe_sectors != 0);
}

uint32_t source_stripe_data_sectors(const struct stripe_source *src, uint64_t stripe)
{
	if (stripe >= source_stripe_count(src))
		return 0;
	uint64_t left = src->sectors - stripe * src->stripe_sectors;
	return left < src->stripe_sectors ? (uint32_t)left : src->stripe_sectors;
}

uint64_t stripe_source_sector_count(const struct stripe_source *src)
{
	return src->sectors;
}

bool stripe_source_has_stripe(const struct stripe_source *src, uint64_t stripe)
{
	if (src->ops->has_stripe)
		return src->ops->has_stripe(src, stripe);
	return stripe < source_stripe_count(src);
}

void stripe_source_destroy(struct stripe_source *src)
{
	if (src)
		src->ops->destroy(src);
}

int source_open(struct stripe_source *src)
{
	return src->ops->open ? src->ops->open(src) : 0;
}

void source_close(struct stripe_source *src)
{
	if (src->ops->close)
		src->ops->close(src);
}

int source_request(struct stripe_source *src, uint64_t stripe, void *buf)
{
	return src->ops->request(src, stripe, buf);
}

int source_poll(struct stripe_source *src, struct source_completion *out, int max)
{
	return src->ops->poll(src, out, max);
}

bool source_busy(const struct stripe_source *src)
{
	return src->ops->busy(src);
}

int source_completion_fd(const struct stripe_source *src)
{
	return src->ops->completion_fd ? src->ops->completion_fd(src) : -1;
}

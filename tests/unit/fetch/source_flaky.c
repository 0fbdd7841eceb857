/* A source wrapper for tests: fails a chosen stripe a given number of times
 * and counts the requests each stripe receives. Built with the tests only;
 * it implements the stripe-source ops like any source. */
#include "fetch_testing.h"

#include "fetch/source_internal.h"

#include <errno.h>
#include <stdlib.h>

struct flaky_source {
	struct stripe_source base;
	struct stripe_source *inner;
	uint64_t fail_stripe;
	uint32_t failures_left;
	uint32_t *request_counts; /* caller memory, may be NULL */
};

static struct flaky_source *to_flaky(struct stripe_source *src)
{
	return (struct flaky_source *)src;
}

static const struct flaky_source *to_flaky_const(const struct stripe_source *src)
{
	return (const struct flaky_source *)src;
}

static int flaky_open(struct stripe_source *src)
{
	return source_open(to_flaky(src)->inner);
}

static void flaky_close(struct stripe_source *src)
{
	source_close(to_flaky(src)->inner);
}

static int flaky_request(struct stripe_source *src, uint64_t stripe, void *buf)
{
	struct flaky_source *f = to_flaky(src);
	if (f->request_counts && stripe < source_stripe_count(src))
		__atomic_fetch_add(&f->request_counts[stripe], 1, __ATOMIC_RELAXED);
	return source_request(f->inner, stripe, buf);
}

static int flaky_poll(struct stripe_source *src, struct source_completion *out, int max)
{
	struct flaky_source *f = to_flaky(src);
	int n = source_poll(f->inner, out, max);
	for (int i = 0; i < n; i++) {
		if (out[i].stripe == f->fail_stripe && f->failures_left > 0) {
			f->failures_left--;
			out[i].result = -EIO;
		}
	}
	return n;
}

static bool flaky_busy(const struct stripe_source *src)
{
	return source_busy(to_flaky_const(src)->inner);
}

static int flaky_completion_fd(const struct stripe_source *src)
{
	return source_completion_fd(to_flaky_const(src)->inner);
}

static bool flaky_has_stripe(const struct stripe_source *src, uint64_t stripe)
{
	return stripe_source_has_stripe(to_flaky_const(src)->inner, stripe);
}

static void flaky_destroy(struct stripe_source *src)
{
	stripe_source_destroy(to_flaky(src)->inner);
	free(src);
}

static const struct stripe_source_ops flaky_ops = {
    .open = flaky_open,
    .close = flaky_close,
    .request = flaky_request,
    .poll = flaky_poll,
    .busy = flaky_busy,
    .completion_fd = flaky_completion_fd,
    .has_stripe = flaky_has_stripe,
    .destroy = flaky_destroy,
};

int stripe_source_flaky(struct stripe_source *inner, uint64_t fail_stripe, uint32_t times,
			uint32_t *request_counts, struct stripe_source **out)
{
	if (!inner)
		return -EINVAL;
	struct flaky_source *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	source_init(&f->base, &flaky_ops, inner->stripe_sectors, inner->sectors);
	f->inner = inner;
	f->fail_stripe = fail_stripe;
	f->failures_left = times;
	f->request_counts = request_counts;
	*out = &f->base;
	return 0;
}

/* top_view_compute: see top_view.h. */
#include "top_view.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t delta(uint64_t older, uint64_t newer)
{
	return newer >= older ? newer - older : 0;
}

/* Bucket deltas of one queue (all ops) added into sum. */
static void add_bucket_deltas(const struct top_sample *older, const struct top_sample *newer,
			      uint32_t q, uint64_t *sum)
{
	const struct top_queue_sample *n = &newer->queues[q];
	const struct top_queue_sample *o =
	    q < older->num_queues && older->num_bounds == newer->num_bounds &&
		    memcmp(older->bounds, newer->bounds, newer->num_bounds * sizeof(double)) == 0
		? &older->queues[q]
		: NULL;
	for (int op = 0; op < TOP_NUM_OPS; op++)
		for (uint32_t b = 0; b < newer->num_bounds; b++)
			sum[b] +=
			    delta(o ? o->buckets[op][b] : n->buckets[op][b], n->buckets[op][b]);
}

/* The bound of the bucket holding rank ceil(q * count). */
static double quantile(const struct top_sample *s, const uint64_t *cumulative, double q)
{
	uint32_t last = s->num_bounds - 1;
	uint64_t count = cumulative[last];
	uint64_t rank = (uint64_t)ceil(q * (double)count);
	if (rank == 0)
		rank = 1;
	for (uint32_t b = 0; b < s->num_bounds; b++) {
		if (cumulative[b] < rank)
			continue;
		if (!isinf(s->bounds[b]))
			return s->bounds[b];
		break;
	}
	/* In the +Inf bucket: the largest finite bound, if any. */
	return last > 0 ? s->bounds[last - 1] : INFINITY;
}

static void finish_latency(const struct top_sample *s, const uint64_t *cumulative,
			   struct top_rates *r)
{
	r->has_latency = s->num_bounds > 0;
	if (!r->has_latency)
		return;
	r->latency_ops = cumulative[s->num_bounds - 1];
	if (r->latency_ops > 0) {
		r->p50 = quantile(s, cumulative, 0.50);
		r->p99 = quantile(s, cumulative, 0.99);
	}
}

/* Counter deltas over the interval, summed over one queue or all. */
struct deltas {
	uint64_t ops[TOP_NUM_OPS];
	uint64_t bytes[TOP_FLUSH];
	uint64_t in_flight;
	uint64_t buckets[TOP_MAX_BUCKETS];
};

static void add_queue(const struct top_sample *older, const struct top_sample *newer, uint32_t q,
		      struct deltas *d)
{
	static const struct top_queue_sample zero;
	const struct top_queue_sample *n = &newer->queues[q];
	const struct top_queue_sample *o = q < older->num_queues ? &older->queues[q] : &zero;
	for (int op = 0; op < TOP_NUM_OPS; op++)
		d->ops[op] += delta(o->ops[op], n->ops[op]);
	for (int op = 0; op < TOP_FLUSH; op++)
		d->bytes[op] += delta(o->bytes[op], n->bytes[op]);
	d->in_flight += n->in_flight;
	add_bucket_deltas(older, newer, q, d->buckets);
}

/* Rates are deltas divided once, so a script recomputing them from the
 * counters gets the same numbers. */
static void finish_rates(const struct top_sample *newer, const struct deltas *d, double seconds,
			 struct top_rates *r)
{
	for (int op = 0; op < TOP_NUM_OPS; op++)
		r->iops[op] = (double)d->ops[op] / seconds;
	for (int op = 0; op < TOP_FLUSH; op++)
		r->bytes_per_second[op] = (double)d->bytes[op] / seconds;
	r->in_flight = d->in_flight;
	finish_latency(newer, d->buckets, r);
}

static void compute_hydration(const struct top_sample *older, const struct top_sample *newer,
			      double seconds, struct top_hydration *h)
{
	h->total = newer->stripes_total;
	h->source = newer->stripes_source;
	h->fetched = newer->stripes_fetched;
	h->failed = newer->stripes_failed;
	h->percent = h->source ? 100.0 * (double)h->fetched / (double)h->source : 100.0;
	uint64_t fetched_now = older->has_stripes ? delta(older->stripes_fetched, h->fetched) : 0;
	h->stripes_per_second = (double)fetched_now / seconds;
	h->bytes_per_second = newer->has_fetch && older->has_fetch
				  ? (double)delta(older->fetch_bytes, newer->fetch_bytes) / seconds
				  : 0;
	uint64_t settled = h->fetched + h->failed;
	uint64_t left = h->source > settled ? h->source - settled : 0;
	if (left == 0)
		h->eta_seconds = 0;
	else if (h->stripes_per_second > 0)
		h->eta_seconds = (double)left / h->stripes_per_second;
	else
		h->eta_seconds = -1;
}

int top_view_compute(const struct top_sample *older, const struct top_sample *newer,
		     struct top_view *out)
{
	*out = (struct top_view){0};
	uint64_t ns = delta(older->taken_ns, newer->taken_ns);
	double seconds = ns ? (double)ns / 1e9 : 1e-9;
	out->interval_seconds = seconds;
	out->num_queues = newer->num_queues;
	out->has_latency = newer->num_bounds > 0;
	if (newer->num_queues) {
		out->queues = calloc(newer->num_queues, sizeof(*out->queues));
		if (!out->queues)
			return -ENOMEM;
	}
	struct deltas total = {0};
	for (uint32_t q = 0; q < newer->num_queues; q++) {
		struct deltas one = {0};
		add_queue(older, newer, q, &one);
		finish_rates(newer, &one, seconds, &out->queues[q]);
		add_queue(older, newer, q, &total);
	}
	finish_rates(newer, &total, seconds, &out->total);
	out->has_hydration = newer->has_stripes;
	if (out->has_hydration)
		compute_hydration(older, newer, seconds, &out->hydration);
	return 0;
}

void top_view_free(struct top_view *v)
{
	free(v->queues);
	*v = (struct top_view){0};
}

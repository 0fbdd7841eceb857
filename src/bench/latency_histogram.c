#include "bench/latency_histogram.h"

#include <string.h>

void latency_histogram_init(struct latency_histogram *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

uint64_t latency_bucket_low(unsigned index)
{
	if (index < (1u << LATENCY_SUB_BITS))
		return index;
	unsigned shift = (index >> LATENCY_SUB_BITS) - 1u;
	uint64_t sub = index & ((1u << LATENCY_SUB_BITS) - 1u);
	return ((1ull << LATENCY_SUB_BITS) + sub) << shift;
}

uint64_t latency_bucket_high(unsigned index)
{
	if (index < (1u << LATENCY_SUB_BITS))
		return index;
	unsigned shift = (index >> LATENCY_SUB_BITS) - 1u;
	return latency_bucket_low(index) + (1ull << shift) - 1u;
}

void latency_histogram_merge(struct latency_histogram *into, const struct latency_histogram *from)
{
	if (from->count == 0)
		return;
	into->count += from->count;
	into->sum_ns += from->sum_ns;
	if (from->min_ns < into->min_ns)
		into->min_ns = from->min_ns;
	if (from->max_ns > into->max_ns)
		into->max_ns = from->max_ns;
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++)
		into->buckets[i] += from->buckets[i];
}

uint64_t latency_histogram_percentile(const struct latency_histogram *h, double percent)
{
	if (h->count == 0)
		return 0;
	double wanted = (double)h->count * percent / 100.0;
	uint64_t rank = (uint64_t)wanted;
	if ((double)rank < wanted)
		rank++;
	if (rank == 0)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen < rank)
			continue;
		uint64_t low = latency_bucket_low(i), high = latency_bucket_high(i);
		uint64_t value = low + (high - low) / 2;
		if (value < h->min_ns)
			value = h->min_ns;
		if (value > h->max_ns)
			value = h->max_ns;
		return value;
	}
	return h->max_ns;
}

double latency_histogram_mean(const struct latency_histogram *h)
{
	return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}

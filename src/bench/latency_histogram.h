/* Latency histogram with log-linear buckets (in the manner of HdrHistogram):
 * values below 64 ns are exact, larger values fall into 64 buckets per power
 * of two, so a reported percentile is within 1/64 (1.6 %) of the true value.
 * Fixed size, recorded without allocation; one per queue thread and
 * direction, merged at the end. */
#ifndef UBIBLK_BENCH_LATENCY_HISTOGRAM_H
#define UBIBLK_BENCH_LATENCY_HISTOGRAM_H

#include <stdint.h>

#define LATENCY_SUB_BITS 6u
/* Values are clamped to 2^40 ns (about 18 minutes). */
#define LATENCY_MAX_BITS 40u
#define LATENCY_BUCKETS	 ((LATENCY_MAX_BITS - LATENCY_SUB_BITS + 1u) << LATENCY_SUB_BITS)

struct latency_histogram {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns;
	uint64_t max_ns;
	uint64_t buckets[LATENCY_BUCKETS];
};

void latency_histogram_init(struct latency_histogram *h);

static inline unsigned latency_bucket_of(uint64_t ns)
{
	const uint64_t limit = (1ull << LATENCY_MAX_BITS) - 1;
	if (ns > limit)
		ns = limit;
	if (ns < (1ull << LATENCY_SUB_BITS))
		return (unsigned)ns;
	unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
	unsigned shift = msb - LATENCY_SUB_BITS;
	unsigned sub = (unsigned)(ns >> shift) & ((1u << LATENCY_SUB_BITS) - 1u);
	return ((shift + 1u) << LATENCY_SUB_BITS) + sub;
}

static inline void latency_histogram_record(struct latency_histogram *h, uint64_t ns)
{
	h->count++;
	h->sum_ns += ns;
	if (ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
	h->buckets[latency_bucket_of(ns)]++;
}

/* Smallest and largest value that fall into bucket `index`. */
uint64_t latency_bucket_low(unsigned index);
uint64_t latency_bucket_high(unsigned index);

/* Add every sample of `from` to `into`. */
void latency_histogram_merge(struct latency_histogram *into, const struct latency_histogram *from);

/* The value at or below which `percent` (0 < percent <= 100) of the samples
 * lie: the middle of the bucket holding the ceil(count * percent / 100)-th
 * smallest sample, clamped to [min, max]. 0 when there are no samples. */
uint64_t latency_histogram_percentile(const struct latency_histogram *h, double percent);

/* Mean in nanoseconds; 0 when there are no samples. */
double latency_histogram_mean(const struct latency_histogram *h);

#endif

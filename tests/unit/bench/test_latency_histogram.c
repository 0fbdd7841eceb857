/* Latency histogram: bucket boundaries, percentiles, merging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "bench/latency_histogram.h"

static struct latency_histogram *new_histogram(void)
{
	struct latency_histogram *h = malloc(sizeof(*h));
	assert_non_null(h);
	latency_histogram_init(h);
	return h;
}

static void buckets_tile_the_value_range(void **state)
{
	/* Every bucket starts right after the previous one ends, and every value
	 * maps to the bucket whose bounds contain it. */
	for (unsigned i = 1; i < LATENCY_BUCKETS; i++)
		assert_int_equal(latency_bucket_low(i), latency_bucket_high(i - 1) + 1);
	uint64_t probes[] = {
	    0, 1, 63, 64, 65, 127, 128, 129, 1000, 4095, 4096, 123456789, (1ull << 39) + 12345};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		unsigned b = latency_bucket_of(probes[i]);
		assert_true(latency_bucket_low(b) <= probes[i]);
		assert_true(probes[i] <= latency_bucket_high(b));
	}
	/* Huge values land in the last bucket instead of overflowing. */
	assert_int_equal(latency_bucket_of(UINT64_MAX), LATENCY_BUCKETS - 1);
}

static void buckets_are_within_two_percent(void **state)
{
	for (unsigned i = 64; i < LATENCY_BUCKETS; i++) {
		uint64_t low = latency_bucket_low(i), high = latency_bucket_high(i);
		assert_true((double)(high - low) <= (double)low / 64.0 + 1.0);
	}
}

static void small_values_are_exact(void **state)
{
	struct latency_histogram *h = new_histogram();
	for (uint64_t v = 1; v <= 50; v++)
		latency_histogram_record(h, v);
	assert_int_equal(h->count, 50);
	assert_int_equal(h->min_ns, 1);
	assert_int_equal(h->max_ns, 50);
	assert_int_equal(latency_histogram_percentile(h, 50), 25);
	assert_int_equal(latency_histogram_percentile(h, 99), 50);
	assert_int_equal(latency_histogram_percentile(h, 100), 50);
	assert_int_equal(latency_histogram_percentile(h, 2), 1);
	assert_true(latency_histogram_mean(h) == 25.5);
	free(h);
}

static void percentiles_of_a_uniform_spread(void **state)
{
	struct latency_histogram *h = new_histogram();
	/* 1 us .. 1 ms in 1 us steps: p50 = 500 us, p99 = 990 us, p99.9 = 999 us. */
	for (uint64_t us = 1; us <= 1000; us++)
		latency_histogram_record(h, us * 1000);
	struct {
		double percent;
		double expected;
	} cases[] = {{50, 500000}, {99, 990000}, {99.9, 999000}, {10, 100000}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double got = (double)latency_histogram_percentile(h, cases[i].percent);
		assert_true(got >= cases[i].expected * 0.984);
		assert_true(got <= cases[i].expected * 1.016);
	}
	/* Clamped to what was seen. */
	assert_true(latency_histogram_percentile(h, 100) <= 1000000);
	assert_true(latency_histogram_percentile(h, 0.0001) >= 1000);
	free(h);
}

static void tail_percentiles_see_outliers(void **state)
{
	struct latency_histogram *h = new_histogram();
	for (int i = 0; i < 998; i++)
		latency_histogram_record(h, 10000);
	latency_histogram_record(h, 5000000);
	latency_histogram_record(h, 5000000);
	/* Rank 990 of 1000 is still a 10 us sample; rank 999 is an outlier. */
	uint64_t p99 = latency_histogram_percentile(h, 99);
	assert_true(p99 >= 9840 && p99 <= 10160);
	uint64_t p999 = latency_histogram_percentile(h, 99.9);
	assert_true(p999 >= 4900000 && p999 <= 5000000);
	free(h);
}

static void merge_adds_samples(void **state)
{
	struct latency_histogram *a = new_histogram(), *b = new_histogram(),
				 *empty = new_histogram();
	for (uint64_t v = 1; v <= 10; v++)
		latency_histogram_record(a, v);
	for (uint64_t v = 11; v <= 20; v++)
		latency_histogram_record(b, v);
	latency_histogram_merge(a, empty);
	assert_int_equal(a->min_ns, 1);
	latency_histogram_merge(a, b);
	assert_int_equal(a->count, 20);
	assert_int_equal(a->min_ns, 1);
	assert_int_equal(a->max_ns, 20);
	assert_int_equal(a->sum_ns, 210);
	assert_int_equal(latency_histogram_percentile(a, 50), 10);
	assert_int_equal(latency_histogram_percentile(a, 100), 20);
	free(a);
	free(b);
	free(empty);
}

static void empty_histogram_reports_zero(void **state)
{
	struct latency_histogram *h = new_histogram();
	assert_int_equal(latency_histogram_percentile(h, 50), 0);
	assert_true(latency_histogram_mean(h) == 0.0);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(buckets_tile_the_value_range),
	    cmocka_unit_test(buckets_are_within_two_percent),
	    cmocka_unit_test(small_values_are_exact),
	    cmocka_unit_test(percentiles_of_a_uniform_spread),
	    cmocka_unit_test(tail_percentiles_see_outliers),
	    cmocka_unit_test(merge_adds_samples),
	    cmocka_unit_test(empty_histogram_reports_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Workload generation: bounds, order, quotas and the read/write mix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bench/io_workload.h"

static void sequential_walks_the_share_and_wraps(void **state)
{
	struct io_workload w;
	io_workload_init(&w, false, 100, 10, 4, 6, 1);
	uint64_t expected[] = {10, 11, 12, 13, 10, 11};
	uint64_t block;
	bool is_read;
	for (size_t i = 0; i < 6; i++) {
		assert_true(io_workload_next(&w, &block, &is_read));
		assert_int_equal(block, expected[i]);
		assert_true(is_read);
	}
	assert_false(io_workload_next(&w, &block, &is_read));
}

static void random_stays_in_bounds_and_covers_them(void **state)
{
	struct io_workload w;
	io_workload_init(&w, true, 0, 100, 16, 10000, 7);
	bool seen[16];
	memset(seen, 0, sizeof(seen));
	uint64_t block;
	bool is_read;
	unsigned n = 0;
	while (io_workload_next(&w, &block, &is_read)) {
		assert_true(block >= 100 && block < 116);
		assert_false(is_read);
		seen[block - 100] = true;
		n++;
	}
	assert_int_equal(n, 10000);
	for (size_t i = 0; i < 16; i++)
		assert_true(seen[i]);
}

static void same_seed_same_sequence(void **state)
{
	struct io_workload a, b, c;
	io_workload_init(&a, true, 50, 0, 1000000, 100, 99);
	io_workload_init(&b, true, 50, 0, 1000000, 100, 99);
	io_workload_init(&c, true, 50, 0, 1000000, 100, 98);
	bool differs = false;
	for (int i = 0; i < 100; i++) {
		uint64_t ba, bb, bc;
		bool ra, rb, rc;
		assert_true(io_workload_next(&a, &ba, &ra));
		assert_true(io_workload_next(&b, &bb, &rb));
		assert_true(io_workload_next(&c, &bc, &rc));
		assert_int_equal(ba, bb);
		assert_int_equal(ra, rb);
		differs |= ba != bc;
	}
	assert_true(differs);
}

static void read_percent_sets_the_mix(void **state)
{
	struct io_workload w;
	io_workload_init(&w, true, 30, 0, 1000, 100000, 5);
	uint64_t block, reads = 0;
	bool is_read;
	while (io_workload_next(&w, &block, &is_read))
		reads += is_read;
	/* 30 % of 100000, well within a few standard deviations (~145). */
	assert_true(reads > 29000 && reads < 31000);
}

static void unlimited_never_runs_out(void **state)
{
	struct io_workload w;
	io_workload_init(&w, false, 100, 0, 3, IO_WORKLOAD_UNLIMITED, 1);
	uint64_t block;
	bool is_read;
	for (int i = 0; i < 100000; i++)
		assert_true(io_workload_next(&w, &block, &is_read));
	assert_int_equal(w.remaining, IO_WORKLOAD_UNLIMITED);
}

static void below_is_uniform_enough(void **state)
{
	uint64_t rng = 3, counts[10] = {0};
	for (int i = 0; i < 100000; i++) {
		uint64_t v = io_workload_below(&rng, 10);
		assert_true(v < 10);
		counts[v]++;
	}
	for (int i = 0; i < 10; i++)
		assert_true(counts[i] > 9500 && counts[i] < 10500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sequential_walks_the_share_and_wraps),
	    cmocka_unit_test(random_stays_in_bounds_and_covers_them),
	    cmocka_unit_test(same_seed_same_sequence),
	    cmocka_unit_test(read_percent_sets_the_mix),
	    cmocka_unit_test(unlimited_never_runs_out),
	    cmocka_unit_test(below_is_uniform_enough),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Command-line value parsing: sizes, durations, counts and CPU lists. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bench/value_parse.h"

static void sizes_take_binary_suffixes(void **state)
{
	uint64_t v;
	assert_int_equal(parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("4k", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("4K", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("1m", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(parse_size("1MiB", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(parse_size("2G", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(parse_size("3gb", &v), 0);
	assert_int_equal(v, 3ull << 30);
	assert_int_equal(parse_size("1t", &v), 0);
	assert_int_equal(v, 1ull << 40);
	assert_int_equal(parse_size("0", &v), 0);
	assert_int_equal(v, 0);
}

static void sizes_reject_junk_and_overflow(void **state)
{
	uint64_t v = 77;
	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("k", &v), -EINVAL);
	assert_int_equal(parse_size("-4k", &v), -EINVAL);
	assert_int_equal(parse_size("4x", &v), -EINVAL);
	assert_int_equal(parse_size("4kk", &v), -EINVAL);
	assert_int_equal(parse_size("4 k", &v), -EINVAL);
	assert_int_equal(parse_size("1.5m", &v), -EINVAL);
	assert_int_equal(parse_size("18446744073709551616", &v), -ERANGE);
	assert_int_equal(parse_size("16777216t", &v), -ERANGE);
	assert_int_equal(v, 77); /* untouched on failure */
}

static void counts_are_plain_decimal(void **state)
{
	uint64_t v;
	assert_int_equal(parse_count("128", &v), 0);
	assert_int_equal(v, 128);
	assert_int_equal(parse_count("18446744073709551615", &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(parse_count("18446744073709551616", &v), -ERANGE);
	assert_int_equal(parse_count("4k", &v), -EINVAL);
	assert_int_equal(parse_count("", &v), -EINVAL);
	assert_int_equal(parse_count("+1", &v), -EINVAL);
}

static void durations_accept_units_and_fractions(void **state)
{
	uint64_t ns;
	assert_int_equal(parse_duration_ns("10", &ns), 0);
	assert_int_equal(ns, 10000000000ull);
	assert_int_equal(parse_duration_ns("1.5s", &ns), 0);
	assert_int_equal(ns, 1500000000ull);
	assert_int_equal(parse_duration_ns("250ms", &ns), 0);
	assert_int_equal(ns, 250000000ull);
	assert_int_equal(parse_duration_ns("0.5ms", &ns), 0);
	assert_int_equal(ns, 500000ull);
	assert_int_equal(parse_duration_ns("2m", &ns), 0);
	assert_int_equal(ns, 120000000000ull);
	assert_int_equal(parse_duration_ns("1h", &ns), 0);
	assert_int_equal(ns, 3600000000000ull);
	assert_int_equal(parse_duration_ns("0.000000001", &ns), 0);
	assert_int_equal(ns, 1);
}

static void durations_reject_junk(void **state)
{
	uint64_t ns;
	assert_int_equal(parse_duration_ns("", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("s", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("1.", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns(".5", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("10d", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("-1", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("99999999999999h", &ns), -ERANGE);
}

static void cpu_lists_expand_ranges(void **state)
{
	int cpus[8];
	size_t n;
	assert_int_equal(parse_cpu_list("3", cpus, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(cpus[0], 3);
	assert_int_equal(parse_cpu_list("0,2-4,7", cpus, 8, &n), 0);
	assert_int_equal(n, 5);
	int expected[] = {0, 2, 3, 4, 7};
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(cpus[i], expected[i]);
	assert_int_equal(parse_cpu_list("0-8", cpus, 8, &n), -E2BIG);
	assert_int_equal(parse_cpu_list("4-2", cpus, 8, &n), -EINVAL);
	assert_int_equal(parse_cpu_list("1,", cpus, 8, &n), -EINVAL);
	assert_int_equal(parse_cpu_list("a", cpus, 8, &n), -EINVAL);
	assert_int_equal(parse_cpu_list("", cpus, 8, &n), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sizes_take_binary_suffixes),
	    cmocka_unit_test(sizes_reject_junk_and_overflow),
	    cmocka_unit_test(counts_are_plain_decimal),
	    cmocka_unit_test(durations_accept_units_and_fractions),
	    cmocka_unit_test(durations_reject_junk),
	    cmocka_unit_test(cpu_lists_expand_ranges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

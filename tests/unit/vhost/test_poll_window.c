/* The adaptive busy-poll window (poll_window.h), driven with made-up times:
 * it grows while sleeps turn out short, holds while polling catches the
 * work, shrinks when a sleep was longer than the bound, never exceeds the
 * bound nor a wake-up's cost (POLL_WINDOW_MAX_NS), and stays 0 when
 * polling is off. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "vhost/poll_window.h"

#define US 1000ull
#define MS 1000000ull

static void test_starts_closed_and_grows_by_doubling(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 1000 * US, 0);
	assert_int_equal(poll_window_ns(&w), 0);
	uint64_t want = POLL_WINDOW_START_NS;
	/* Each sleep of 20 µs, under the bound, doubles the window until it
	 * covers 20 µs. */
	while (want < 20 * US) {
		poll_window_slept(&w, 20 * US);
		assert_int_equal(poll_window_ns(&w), want);
		want *= 2;
	}
	assert_int_equal(poll_window_ns(&w), 16 * US);
	poll_window_slept(&w, 20 * US);
	assert_int_equal(poll_window_ns(&w), 32 * US);
	/* Now polling would catch it: a sleep within the window changes
	 * nothing. */
	poll_window_slept(&w, 20 * US);
	poll_window_slept(&w, 10 * US);
	assert_int_equal(poll_window_ns(&w), 32 * US);
}

static void test_never_longer_than_a_wake_up_costs(void **state)
{
	(void)state;
	struct poll_window w;
	/* A bound above POLL_WINDOW_MAX_NS (the default 1 ms): short gaps grow
	 * the window only up to the cap... */
	poll_window_init(&w, 1000 * US, 0);
	for (int i = 0; i < 20; i++)
		poll_window_slept(&w, 30 * US);
	assert_int_equal(poll_window_ns(&w), POLL_WINDOW_MAX_NS);
	/* ...and gaps past the cap, though under the bound, count as long
	 * ones: no window we may use catches them. */
	poll_window_slept(&w, 300 * US);
	assert_int_equal(poll_window_ns(&w), POLL_WINDOW_MAX_NS / 2);
	/* A cap of the caller's own replaces it (tests of the worker). */
	poll_window_init(&w, 1000 * US, 200 * US);
	for (int i = 0; i < 20; i++)
		poll_window_slept(&w, 150 * US);
	assert_int_equal(poll_window_ns(&w), 200 * US);
}

static void test_never_exceeds_the_bound(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 20 * US, 0);
	for (int i = 0; i < 20; i++) {
		poll_window_slept(&w, 19 * US);
		assert_true(poll_window_ns(&w) <= 20 * US);
	}
	assert_int_equal(poll_window_ns(&w), 20 * US);
	/* A gap of exactly the bound still grows: the bound is a window we
	 * may use. */
	poll_window_init(&w, 24 * US, 0);
	for (int i = 0; i < 20; i++)
		poll_window_slept(&w, 24 * US);
	assert_int_equal(poll_window_ns(&w), 24 * US);
}

static void test_a_sleep_past_the_bound_halves_it_down_to_zero(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 1000 * US, 0);
	for (int i = 0; i < 4; i++)
		poll_window_slept(&w, 30 * US);
	assert_int_equal(poll_window_ns(&w), 32 * US);
	poll_window_slept(&w, 5 * MS);
	assert_int_equal(poll_window_ns(&w), 16 * US);
	poll_window_slept(&w, 5 * MS);
	poll_window_slept(&w, 5 * MS);
	assert_int_equal(poll_window_ns(&w), POLL_WINDOW_START_NS);
	/* Below the start there is no point: it closes. */
	poll_window_slept(&w, 5 * MS);
	assert_int_equal(poll_window_ns(&w), 0);
	poll_window_slept(&w, 5 * MS);
	assert_int_equal(poll_window_ns(&w), 0);
	/* And opens again from the start. */
	poll_window_slept(&w, 20 * US);
	assert_int_equal(poll_window_ns(&w), POLL_WINDOW_START_NS);
}

static void test_zero_bound_never_polls(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 0, 0);
	for (int i = 0; i < 10; i++) {
		poll_window_slept(&w, 1 * US);
		poll_window_slept(&w, 0);
	}
	assert_int_equal(poll_window_ns(&w), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_starts_closed_and_grows_by_doubling),
	    cmocka_unit_test(test_never_longer_than_a_wake_up_costs),
	    cmocka_unit_test(test_never_exceeds_the_bound),
	    cmocka_unit_test(test_a_sleep_past_the_bound_halves_it_down_to_zero),
	    cmocka_unit_test(test_zero_bound_never_polls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The adaptive busy-poll window (poll_window.h), driven with made-up times:
 * it grows while sleeps turn out short, holds while polling catches the
 * work, shrinks when a sleep was longer than the bound, never exceeds the
 * bound, stays 0 when polling is off, and keeps to a wake-up's cost for a
 * while when the thread waited for a CPU. */
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
	poll_window_init(&w, 1000 * US);
	assert_int_equal(poll_window_ns(&w, 0), 0);
	uint64_t want = POLL_WINDOW_START_NS;
	/* Each sleep of 300 µs, under the bound, doubles the window until it
	 * covers 300 µs. */
	while (want < 300 * US) {
		poll_window_slept(&w, 300 * US);
		assert_int_equal(poll_window_ns(&w, 0), want);
		want *= 2;
	}
	assert_int_equal(poll_window_ns(&w, 0), 256 * US);
	poll_window_slept(&w, 300 * US);
	assert_int_equal(poll_window_ns(&w, 0), 512 * US);
	/* Now polling would catch it: a sleep within the window changes
	 * nothing. */
	poll_window_slept(&w, 300 * US);
	poll_window_slept(&w, 10 * US);
	assert_int_equal(poll_window_ns(&w, 0), 512 * US);
}

static void test_never_exceeds_the_bound(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 50 * US);
	for (int i = 0; i < 20; i++) {
		poll_window_slept(&w, 49 * US);
		assert_true(poll_window_ns(&w, 0) <= 50 * US);
	}
	assert_int_equal(poll_window_ns(&w, 0), 50 * US);
	/* A gap of exactly the bound still grows: the bound is a window we
	 * may use. */
	poll_window_init(&w, 40 * US);
	for (int i = 0; i < 20; i++)
		poll_window_slept(&w, 40 * US);
	assert_int_equal(poll_window_ns(&w, 0), 40 * US);
}

static void test_a_sleep_past_the_bound_halves_it_down_to_zero(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 1000 * US);
	for (int i = 0; i < 4; i++)
		poll_window_slept(&w, 100 * US);
	assert_int_equal(poll_window_ns(&w, 0), 32 * US);
	poll_window_slept(&w, 5 * MS);
	assert_int_equal(poll_window_ns(&w, 0), 16 * US);
	poll_window_slept(&w, 5 * MS);
	poll_window_slept(&w, 5 * MS);
	assert_int_equal(poll_window_ns(&w, 0), POLL_WINDOW_START_NS);
	/* Below the start there is no point: it closes. */
	poll_window_slept(&w, 5 * MS);
	assert_int_equal(poll_window_ns(&w, 0), 0);
	poll_window_slept(&w, 5 * MS);
	assert_int_equal(poll_window_ns(&w, 0), 0);
	/* And opens again from the start. */
	poll_window_slept(&w, 20 * US);
	assert_int_equal(poll_window_ns(&w, 0), POLL_WINDOW_START_NS);
}

static void test_zero_bound_never_polls(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 0);
	for (int i = 0; i < 10; i++) {
		poll_window_slept(&w, 1 * US);
		poll_window_slept(&w, 0);
	}
	assert_int_equal(poll_window_ns(&w, 0), 0);
	assert_false(poll_window_sample_due(&w, 5 * MS));
}

static struct poll_window opened(uint64_t now)
{
	struct poll_window w;
	poll_window_init(&w, 1000 * US);
	for (int i = 0; i < 5; i++)
		poll_window_slept(&w, 60 * US);
	assert_int_equal(poll_window_ns(&w, now), 64 * US);
	return w;
}

static void test_waiting_for_a_cpu_lowers_the_bound_for_the_backoff(void **state)
{
	(void)state;
	uint64_t t = 10 * MS;
	struct poll_window w = opened(t);
	assert_true(poll_window_sample_due(&w, t));
	assert_false(poll_window_sample(&w, t, 7 * MS)); /* the first only starts */
	assert_false(poll_window_sample_due(&w, t + POLL_WINDOW_SAMPLE_NS - 1));
	t += POLL_WINDOW_SAMPLE_NS;
	assert_true(poll_window_sample_due(&w, t));
	/* A quarter of the last millisecond spent waiting on a run queue. */
	assert_true(poll_window_sample(&w, t, 7 * MS + POLL_WINDOW_SAMPLE_NS / 4));
	assert_int_equal(w.backoffs, 1);
	assert_true(poll_window_contended(&w, t));
	assert_int_equal(poll_window_ns(&w, t), POLL_WINDOW_CONTENDED_MAX_NS);
	/* Meanwhile the window adapts under the lower bound, and no sample is
	 * taken. */
	poll_window_slept(&w, POLL_WINDOW_CONTENDED_MAX_NS + 1);
	assert_int_equal(poll_window_ns(&w, t), POLL_WINDOW_CONTENDED_MAX_NS / 2);
	for (int i = 0; i < 5; i++)
		poll_window_slept(&w, POLL_WINDOW_CONTENDED_MAX_NS);
	assert_int_equal(poll_window_ns(&w, t), POLL_WINDOW_CONTENDED_MAX_NS);
	assert_false(poll_window_sample_due(&w, t + 5 * MS));
	assert_int_equal(poll_window_ns(&w, t + POLL_WINDOW_BACKOFF_NS - 1),
			 POLL_WINDOW_CONTENDED_MAX_NS);
	/* After the back-off the full bound is back, and sampling starts
	 * afresh: the wait piled up meanwhile is not held against the next
	 * millisecond. */
	t += POLL_WINDOW_BACKOFF_NS;
	assert_false(poll_window_contended(&w, t));
	poll_window_slept(&w, 60 * US);
	assert_int_equal(poll_window_ns(&w, t), 2 * POLL_WINDOW_CONTENDED_MAX_NS);
	assert_true(poll_window_sample_due(&w, t));
	assert_false(poll_window_sample(&w, t, 90 * MS));
	t += POLL_WINDOW_SAMPLE_NS;
	assert_false(poll_window_sample(&w, t, 90 * MS + POLL_WINDOW_SAMPLE_NS / 10));
	assert_int_equal(poll_window_ns(&w, t), 2 * POLL_WINDOW_CONTENDED_MAX_NS);
}

static void test_a_bound_below_the_busy_bound_stays(void **state)
{
	(void)state;
	struct poll_window w;
	uint64_t max = POLL_WINDOW_CONTENDED_MAX_NS / 2;
	poll_window_init(&w, max);
	for (int i = 0; i < 5; i++)
		poll_window_slept(&w, max);
	assert_int_equal(poll_window_ns(&w, 0), max);
	assert_false(poll_window_sample(&w, MS, 0));
	assert_true(poll_window_sample(&w, 2 * MS, MS));
	assert_int_equal(poll_window_ns(&w, 2 * MS), max);
	poll_window_slept(&w, max);
	assert_int_equal(poll_window_ns(&w, 2 * MS), max);
}

static void test_a_little_waiting_is_not_contention(void **state)
{
	(void)state;
	uint64_t t = 10 * MS;
	struct poll_window w = opened(t);
	assert_false(poll_window_sample(&w, t, 0));
	uint64_t wait = 0;
	for (int i = 0; i < 100; i++) {
		t += 2 * POLL_WINDOW_SAMPLE_NS;
		wait += 2 * POLL_WINDOW_SAMPLE_NS / POLL_WINDOW_CONTENDED_SHARE; /* the limit */
		assert_false(poll_window_sample(&w, t, wait));
	}
	assert_int_equal(poll_window_ns(&w, t), 64 * US);
	assert_int_equal(w.backoffs, 0);
	/* A counter that goes back is no evidence either. */
	t += POLL_WINDOW_SAMPLE_NS;
	assert_false(poll_window_sample(&w, t, 0));
	assert_int_equal(poll_window_ns(&w, t), 64 * US);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_starts_closed_and_grows_by_doubling),
	    cmocka_unit_test(test_never_exceeds_the_bound),
	    cmocka_unit_test(test_a_sleep_past_the_bound_halves_it_down_to_zero),
	    cmocka_unit_test(test_zero_bound_never_polls),
	    cmocka_unit_test(test_waiting_for_a_cpu_lowers_the_bound_for_the_backoff),
	    cmocka_unit_test(test_a_bound_below_the_busy_bound_stays),
	    cmocka_unit_test(test_a_little_waiting_is_not_contention),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

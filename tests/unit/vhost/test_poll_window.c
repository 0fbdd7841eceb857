/* The adaptive busy-poll window (poll_window.h), driven with made-up times:
 * it grows while sleeps turn out short, holds while polling catches the
 * work, shrinks when a sleep was longer than the bound, never exceeds the
 * bound, stays 0 when polling is off; and the window used is held to a
 * wake-up's cost while requests are at the device or the thread has just
 * been preempted. */
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
	poll_window_init(&w, 1000 * US, 0, 0, 0);
	assert_int_equal(poll_window_ns(&w), 0);
	uint64_t want = POLL_WINDOW_START_NS;
	/* Each sleep of 300 µs, under the bound, doubles the window until it
	 * covers 300 µs. */
	while (want < 300 * US) {
		poll_window_slept(&w, 300 * US);
		assert_int_equal(poll_window_ns(&w), want);
		want *= 2;
	}
	assert_int_equal(poll_window_ns(&w), 256 * US);
	poll_window_slept(&w, 300 * US);
	assert_int_equal(poll_window_ns(&w), 512 * US);
	/* Now polling would catch it: a sleep within the window changes
	 * nothing. */
	poll_window_slept(&w, 300 * US);
	poll_window_slept(&w, 10 * US);
	assert_int_equal(poll_window_ns(&w), 512 * US);
}

static void test_never_exceeds_the_bound(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 50 * US, 0, 0, 0);
	for (int i = 0; i < 20; i++) {
		poll_window_slept(&w, 49 * US);
		assert_true(poll_window_ns(&w) <= 50 * US);
	}
	assert_int_equal(poll_window_ns(&w), 50 * US);
	/* A gap of exactly the bound still grows: the bound is a window we
	 * may use. */
	poll_window_init(&w, 40 * US, 0, 0, 0);
	for (int i = 0; i < 20; i++)
		poll_window_slept(&w, 40 * US);
	assert_int_equal(poll_window_ns(&w), 40 * US);
}

static void test_a_sleep_past_the_bound_halves_it_down_to_zero(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 1000 * US, 0, 0, 0);
	for (int i = 0; i < 4; i++)
		poll_window_slept(&w, 100 * US);
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
	poll_window_init(&w, 0, 0, 0, 0);
	for (int i = 0; i < 10; i++) {
		poll_window_slept(&w, 1 * US);
		poll_window_slept(&w, 0);
	}
	assert_int_equal(poll_window_ns(&w), 0);
	assert_int_equal(poll_window_use(&w, 0, false), 0);
}

/* A window grown to 512 µs by 300 µs gaps, at time `now`. */
static void grow_to_512(struct poll_window *w, uint64_t now, uint64_t preemptions)
{
	poll_window_init(w, 1000 * US, 0, now, preemptions);
	for (int i = 0; i < 10; i++)
		poll_window_slept(w, 300 * US);
	assert_int_equal(poll_window_ns(w), 512 * US);
}

static void test_device_waits_sleep_unless_contended(void **state)
{
	(void)state;
	struct poll_window w;
	grow_to_512(&w, 0, 0);
	/* Waiting for the guest: the whole window. */
	assert_int_equal(poll_window_use(&w, 10 * US, false), 512 * US);
	/* Requests at the device on an idle CPU: a spin does not make it
	 * faster and the wake-up is cheap. */
	assert_int_equal(poll_window_use(&w, 10 * US, true), 0);
	/* Learned as before: the device wait does not change the window. */
	assert_int_equal(poll_window_ns(&w), 512 * US);
	poll_window_init(&w, 1000 * US, 0, 0, 0);
	poll_window_slept(&w, 10 * US);
	assert_int_equal(poll_window_use(&w, 10 * US, true), 0);
}

static void test_preemption_holds_the_window_to_a_wake_up(void **state)
{
	(void)state;
	struct poll_window w;
	uint64_t t = 5 * MS;
	grow_to_512(&w, t, 7);
	/* The count is looked at once per check interval. */
	assert_false(poll_window_check_due(&w, t + POLL_CONTENTION_CHECK_NS - 1));
	assert_true(poll_window_check_due(&w, t + POLL_CONTENTION_CHECK_NS));
	/* Not preempted since: uncontended, the whole window. */
	t += POLL_CONTENTION_CHECK_NS;
	poll_window_preemptions(&w, t, 7);
	assert_false(poll_window_check_due(&w, t));
	assert_int_equal(poll_window_use(&w, t, false), 512 * US);
	/* Preempted: held to a wake-up's cost for the hold time... */
	t += POLL_CONTENTION_CHECK_NS;
	poll_window_preemptions(&w, t, 8);
	assert_int_equal(poll_window_use(&w, t, false), POLL_WAKE_COST_NS);
	assert_int_equal(poll_window_use(&w, t + POLL_CONTENDED_HOLD_NS - 1, false),
			 POLL_WAKE_COST_NS);
	/* A device wait on a contended CPU: a wake-up waits for the CPU too,
	 * so a spin up to its cost pays. */
	assert_int_equal(poll_window_use(&w, t, true), POLL_WAKE_COST_NS);
	/* ...the learned window is kept... */
	assert_int_equal(poll_window_ns(&w), 512 * US);
	/* ...and used again once the hold is over without a new preemption. */
	assert_int_equal(poll_window_use(&w, t + POLL_CONTENDED_HOLD_NS, false), 512 * US);
	poll_window_preemptions(&w, t + POLL_CONTENDED_HOLD_NS, 8);
	assert_int_equal(poll_window_use(&w, t + POLL_CONTENDED_HOLD_NS, false), 512 * US);
	assert_int_equal(poll_window_use(&w, t + POLL_CONTENDED_HOLD_NS, true), 0);
}

static void test_a_test_may_raise_the_wake_up_cost(void **state)
{
	(void)state;
	struct poll_window w;
	poll_window_init(&w, 1000 * US, 2000 * US, 0, 0);
	for (int i = 0; i < 10; i++)
		poll_window_slept(&w, 300 * US);
	poll_window_preemptions(&w, POLL_CONTENTION_CHECK_NS, 1);
	assert_int_equal(poll_window_use(&w, POLL_CONTENTION_CHECK_NS, true), 512 * US);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_starts_closed_and_grows_by_doubling),
	    cmocka_unit_test(test_never_exceeds_the_bound),
	    cmocka_unit_test(test_a_sleep_past_the_bound_halves_it_down_to_zero),
	    cmocka_unit_test(test_zero_bound_never_polls),
	    cmocka_unit_test(test_device_waits_sleep_unless_contended),
	    cmocka_unit_test(test_preemption_holds_the_window_to_a_wake_up),
	    cmocka_unit_test(test_a_test_may_raise_the_wake_up_cost),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The autofetch walk: every source stripe copied exactly once and recorded
 * in the metadata file, explicit requests going first, the source closed
 * when done, and stopping in the middle leaving a consistent file. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "common/common.h"
#include "fetch_test_util.h"

#define HAS_SOURCE META_HEADER_HAS_SOURCE
#define FETCHED	   META_HEADER_FETCHED

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static uint64_t fetched_count(struct fixture *fx)
{
	uint64_t total, source, fetched;
	stripe_state_counts(fx->state, &total, &source, &fetched);
	return fetched;
}

static void assert_everything_fetched_once(struct fixture *fx)
{
	for (uint64_t s = 0; s < fx->image_stripes; s++) {
		if (fx->request_counts[s] != 1)
			fail_msg("stripe %llu was read %u times", (unsigned long long)s,
				 fx->request_counts[s]);
		assert_int_equal(file_header(fx, s), HAS_SOURCE | FETCHED);
		assert_true(stripe_is_fetched(fx, s));
	}
	for (uint64_t s = fx->image_stripes; s < fx->disk_stripes; s++) {
		assert_int_equal(file_header(fx, s), 0);
		assert_int_equal(stripe_state_fetch(fx->state, s), STRIPE_NO_SOURCE);
	}
	for (uint64_t s = 0; s < fx->disk_stripes; s++)
		assert_stripe_copied(fx, s);
}

/* 2000 sectors of image: 31 full stripes and one of 16 sectors. */
static void test_autofetch_copies_every_stripe_once(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.image_sectors = 2000;
	o.autofetch = true;
	fixture_start(&fx, &o);
	wait_until(&fx, all_source_stripes_fetched, 0);
	wait_until(&fx, source_dropped, 0);
	assert_int_equal(fx.image_stripes, 32);
	assert_everything_fetched_once(&fx);
	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	assert_int_equal(st.stripes_fetched, 32);
	assert_int_equal(st.bytes_fetched, 2000 * SECTOR_SIZE);
	assert_int_equal(st.fetch_failures, 0);
	/* Coalescing: never more sector writes than stripes. */
	assert_in_range(st.metadata_writes, 1, 32);

	/* Done and idle: the thread sleeps. */
	sleep_ms(20);
	uint64_t before, after;
	assert_int_equal(fetch_worker_thread_cpu_ns(fx.worker, &before), 0);
	sleep_ms(200);
	assert_int_equal(fetch_worker_thread_cpu_ns(fx.worker, &after), 0);
	assert_true(after - before < 5 * 1000 * 1000);
	fixture_teardown(&fx);
}

/* 600 stripes (two metadata sectors of headers). Requests made while the
 * walk is at its start complete long before the walk gets there. */
static void test_explicit_requests_overtake_autofetch(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.disk_sectors = 600 * 64;
	o.image_sectors = 600 * 64;
	o.autofetch = true;
	fixture_start(&fx, &o);
	const uint64_t wanted[] = {599, 550, 300};
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(fetch_worker_request_fetch(fx.worker, wanted[i]), 0);
	for (size_t i = 0; i < 3; i++)
		wait_until(&fx, stripe_is_fetched, wanted[i]);
	uint64_t when_done = fetched_count(&fx);
	if (when_done >= 200)
		fail_msg("the requested stripes waited for %llu autofetched ones",
			 (unsigned long long)when_done);
	wait_until(&fx, all_source_stripes_fetched, 0);
	wait_until(&fx, source_dropped, 0);
	assert_everything_fetched_once(&fx);
	fixture_teardown(&fx);
}

/* Stop in the middle of the walk: whatever the metadata file says is
 * fetched really is on the disk, and stripes someone waits for end up
 * Fetched or Failed, never left pending. */
static void test_stop_with_fetches_in_flight(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.disk_sectors = 600 * 64;
	o.image_sectors = 600 * 64;
	o.autofetch = true;
	fixture_start(&fx, &o);
	sleep_ms(15);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 599), 0);
	assert_int_equal(fetch_worker_request_written(fx.worker, 598), 0);
	fetch_worker_shutdown(fx.worker);

	enum stripe_fetch_state last = stripe_state_fetch(fx.state, 599);
	assert_true(last == STRIPE_FETCHED || last == STRIPE_FAILED);
	assert_true(stripe_is_written(&fx, 598) || stripe_is_failed(&fx, 598));
	uint64_t on_file = 0;
	for (uint64_t s = 0; s < fx.disk_stripes; s++) {
		uint8_t header = file_header(&fx, s);
		if (header & FETCHED) {
			assert_stripe_copied(&fx, s);
			on_file++;
		}
		/* Shared state Fetched implies FETCHED durable. */
		if (stripe_is_fetched(&fx, s))
			assert_true(header & FETCHED);
	}
	/* A FETCHED write may have reached the file unobserved, never the reverse. */
	assert_true(fetched_count(&fx) <= on_file);
	/* A request that would need the worker is refused now. */
	for (uint64_t s = 0; s < fx.disk_stripes; s++) {
		if (!stripe_state_ready(fx.state, s)) {
			assert_int_equal(fetch_worker_request_fetch(fx.worker, s), -ESHUTDOWN);
			break;
		}
	}
	fixture_teardown(&fx);
}

/* Every stripe already fetched: the source is not needed, not even checked
 * against the disk (nothing will be read from it), and closed at once. */
static void test_finished_disk_drops_source_at_start(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.image_sectors = 8192; /* larger than the disk */
	o.extra_header_bits = FETCHED;
	o.autofetch = true;
	fixture_start(&fx, &o);
	assert_false(fetch_worker_has_source(fx.worker));
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 3), 0);
	sleep_ms(30);
	assert_int_equal(total_requests(&fx), 0);
	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	assert_int_equal(st.metadata_writes, 0);
	fixture_teardown(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_autofetch_copies_every_stripe_once),
	    cmocka_unit_test(test_explicit_requests_overtake_autofetch),
	    cmocka_unit_test(test_stop_with_fetches_in_flight),
	    cmocka_unit_test(test_finished_disk_drops_source_at_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The fetch worker over real files: one fetch end to end (data, FETCHED bit
 * in the file, shared state, notification, stats), a partial last stripe,
 * WRITTEN, coalescing of duplicates, requests it must ignore or refuse, the
 * sync engine, and sleeping when idle. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "fetch_test_util.h"

#define HAS_SOURCE META_HEADER_HAS_SOURCE
#define FETCHED	   META_HEADER_FETCHED
#define WRITTEN	   META_HEADER_WRITTEN

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void drain_notifications(struct fixture *fx)
{
	uint64_t v;
	while (read(fx->notify_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
}

static void test_one_fetch(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_start(&fx, &o);
	assert_true(fetch_worker_has_source(fx.worker));
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 3), 0);
	wait_until(&fx, stripe_is_fetched, 3);

	assert_stripe_copied(&fx, 3);
	uint8_t zeros[32768] = {0}, buf[32768];
	read_disk(&fx, 2 * sizeof(buf), buf, sizeof(buf));
	assert_memory_equal(buf, zeros, sizeof(buf));
	read_disk(&fx, 4 * sizeof(buf), buf, sizeof(buf));
	assert_memory_equal(buf, zeros, sizeof(buf));
	assert_int_equal(file_header(&fx, 3), HAS_SOURCE | FETCHED);
	assert_int_equal(file_header(&fx, 2), HAS_SOURCE);
	assert_int_equal(file_header(&fx, 4), HAS_SOURCE);
	assert_int_equal(fx.request_counts[3], 1);

	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	assert_int_equal(st.stripes_fetched, 1);
	assert_int_equal(st.bytes_fetched, 32768);
	assert_int_equal(st.fetch_failures, 0);
	assert_int_equal(st.metadata_writes, 1);
	assert_int_equal(st.metadata_failures, 0);
	assert_true(st.fetch_latency_ns_total > 0);
	assert_true(st.fetch_latency_ns_max > 0);
	assert_true(st.fetch_latency_ns_max <= st.fetch_latency_ns_total);

	/* The notification comes only once the change is durable and the
	 * shared state says so. */
	drain_notifications(&fx);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 4), 0);
	struct pollfd pfd = {.fd = fx.notify_fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, TEST_WAIT_MS), 1);
	assert_true(stripe_is_fetched(&fx, 4));
	assert_int_equal(file_header(&fx, 4), HAS_SOURCE | FETCHED);

	/* Fetched stripes are not fetched again. */
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 3), 0);
	sleep_ms(50);
	assert_int_equal(fx.request_counts[3], 1);
	assert_int_equal(total_requests(&fx), 2);
	fixture_teardown(&fx);
}

/* Image of 100 sectors, disk of 120: stripe 1 has 36 sectors of data and
 * 56 sectors on the disk. The disk starts full of 0xee and stripe 0 goes
 * first through the same buffer, so stale bytes would show. */
static void test_partial_last_stripe(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.image_sectors = 100;
	o.disk_sectors = 120;
	o.disk_fill = 0xee;
	fixture_start(&fx, &o);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 0), 0);
	wait_until(&fx, stripe_is_fetched, 0);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 1), 0);
	wait_until(&fx, stripe_is_fetched, 1);
	assert_stripe_copied(&fx, 0);
	assert_stripe_copied(&fx, 1);
	struct stat st;
	assert_int_equal(stat(fx.disk_path, &st), 0);
	assert_int_equal(st.st_size, 120 * SECTOR_SIZE);
	struct fetch_stats stats;
	fetch_worker_stats(fx.worker, &stats);
	assert_int_equal(stats.bytes_fetched, 100 * SECTOR_SIZE);
	fixture_teardown(&fx);
}

static void test_written_is_durable_first(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_start(&fx, &o);
	assert_int_equal(fetch_worker_request_written(fx.worker, 5), 0);
	wait_until(&fx, stripe_is_written, 5);
	assert_int_equal(file_header(&fx, 5), HAS_SOURCE | WRITTEN);
	assert_int_equal(stripe_state_fetch(fx.state, 5), STRIPE_NOT_FETCHED);

	/* A stripe without a source takes WRITTEN as well. */
	assert_int_equal(fetch_worker_request_written(fx.worker, 40), 0);
	wait_until(&fx, stripe_is_written, 40);
	assert_int_equal(file_header(&fx, 40), WRITTEN);
	assert_int_equal(stripe_state_fetch(fx.state, 40), STRIPE_NO_SOURCE);

	/* Already written: nothing more is stored. */
	struct fetch_stats before, after;
	fetch_worker_stats(fx.worker, &before);
	assert_int_equal(fetch_worker_request_written(fx.worker, 5), 0);
	sleep_ms(30);
	fetch_worker_stats(fx.worker, &after);
	assert_int_equal(after.metadata_writes, before.metadata_writes);
	assert_int_equal(total_requests(&fx), 0);

	/* FETCHED and WRITTEN of one stripe both end up in its header. */
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 5), 0);
	wait_until(&fx, stripe_is_fetched, 5);
	assert_int_equal(file_header(&fx, 5), HAS_SOURCE | WRITTEN | FETCHED);
	fixture_teardown(&fx);
}

struct hammer {
	struct fixture *fx;
	int rounds;
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < h->rounds; i++) {
		assert_int_equal(fetch_worker_request_fetch(h->fx->worker, 1), 0);
		assert_int_equal(fetch_worker_request_written(h->fx->worker, 1), 0);
		assert_int_equal(fetch_worker_request_fetch(h->fx->worker, 2), 0);
	}
	return NULL;
}

static void test_duplicates_are_coalesced(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_start(&fx, &o);
	pthread_t threads[4];
	struct hammer h = {.fx = &fx, .rounds = 2000};
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, hammer_thread, &h), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	wait_until(&fx, stripe_is_fetched, 1);
	wait_until(&fx, stripe_is_fetched, 2);
	wait_until(&fx, stripe_is_written, 1);
	assert_int_equal(fx.request_counts[1], 1);
	assert_int_equal(fx.request_counts[2], 1);
	assert_int_equal(total_requests(&fx), 2);
	assert_int_equal(file_header(&fx, 1), HAS_SOURCE | FETCHED | WRITTEN);
	assert_int_equal(file_header(&fx, 2), HAS_SOURCE | FETCHED);
	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	/* Three bits of one header group: at most one sector write each. */
	assert_in_range(st.metadata_writes, 1, 3);
	assert_int_equal(st.stripes_fetched, 2);
	fixture_teardown(&fx);
}

static void test_requests_to_ignore_or_refuse(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_start(&fx, &o);
	/* 64 stripes cover the disk. */
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 64), -EINVAL);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, UINT64_MAX), -EINVAL);
	assert_int_equal(fetch_worker_request_written(fx.worker, 64), -EINVAL);
	/* Stripe 40 has no source: nothing to fetch, the disk holds it. */
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 40), 0);
	sleep_ms(30);
	assert_int_equal(stripe_state_fetch(fx.state, 40), STRIPE_NO_SOURCE);
	assert_int_equal(file_header(&fx, 40), 0);
	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	assert_int_equal(st.metadata_writes, 0);
	assert_int_equal(total_requests(&fx), 0);
	/* Subscribing a bad fd is refused; unsubscribing an unknown one is a
	 * no-op. */
	assert_int_equal(fetch_worker_subscribe(fx.worker, -1), -EBADF);
	fetch_worker_unsubscribe(fx.worker, 12345);
	fixture_teardown(&fx);
}

static void test_sync_engine(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.engine = BDEV_ENGINE_SYNC;
	fixture_start(&fx, &o);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 7), 0);
	assert_int_equal(fetch_worker_request_written(fx.worker, 7), 0);
	wait_until(&fx, stripe_is_fetched, 7);
	wait_until(&fx, stripe_is_written, 7);
	assert_stripe_copied(&fx, 7);
	assert_int_equal(file_header(&fx, 7), HAS_SOURCE | FETCHED | WRITTEN);
	fixture_teardown(&fx);
}

/* No source at all (metadata without HAS_SOURCE): the worker still keeps
 * WRITTEN bits, and there is nothing to fetch. */
static void test_worker_without_a_source(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.image_sectors = 0;
	fixture_files(&fx, &o);
	struct stripe_source *none;
	assert_int_equal(stripe_source_none(64, &none), 0);
	struct fetch_worker_options wo = {
	    .disk = fx.disk, .metadata = fx.metadata, .source = none, .state = fx.state};
	struct error err = {0};
	assert_int_equal(fetch_worker_start(&wo, &fx.worker, &err), 0);
	fx.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_int_equal(fetch_worker_subscribe(fx.worker, fx.notify_fd), 0);
	assert_false(fetch_worker_has_source(fx.worker));
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 0), 0);
	assert_int_equal(fetch_worker_request_written(fx.worker, 0), 0);
	wait_until(&fx, stripe_is_written, 0);
	assert_int_equal(file_header(&fx, 0), WRITTEN);
	assert_int_equal(stripe_state_fetch(fx.state, 0), STRIPE_NO_SOURCE);
	fixture_teardown(&fx);
}

static uint64_t worker_cpu_ns(struct fixture *fx)
{
	uint64_t ns = 0;
	assert_int_equal(fetch_worker_thread_cpu_ns(fx->worker, &ns), 0);
	return ns;
}

/* The worker sleeps in poll(2) when there is nothing to do: over 200 ms it
 * must use (almost) no CPU. A spinning loop would use all 200 ms. */
static void test_idle_worker_sleeps(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_start(&fx, &o);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 0), 0);
	wait_until(&fx, stripe_is_fetched, 0);
	sleep_ms(20);
	uint64_t before = worker_cpu_ns(&fx);
	sleep_ms(200);
	uint64_t used = worker_cpu_ns(&fx) - before;
	assert_true(used < 5 * 1000 * 1000);
	/* And it still wakes up for the next request. */
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 1), 0);
	wait_until(&fx, stripe_is_fetched, 1);
	fixture_teardown(&fx);
}

static void test_shutdown_refuses_requests(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_start(&fx, &o);
	fetch_worker_shutdown(fx.worker);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 1), -ESHUTDOWN);
	assert_int_equal(fetch_worker_request_written(fx.worker, 1), -ESHUTDOWN);
	assert_int_equal(fetch_worker_thread_cpu_ns(fx.worker, &(uint64_t){0}), -ESRCH);
	/* Nothing was asked for, so nothing failed. */
	for (uint64_t s = 0; s < 32; s++)
		assert_int_equal(stripe_state_fetch(fx.state, s), STRIPE_NOT_FETCHED);
	fetch_worker_shutdown(fx.worker); /* twice is fine */
	fixture_teardown(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_fetch),
	    cmocka_unit_test(test_partial_last_stripe),
	    cmocka_unit_test(test_written_is_durable_first),
	    cmocka_unit_test(test_duplicates_are_coalesced),
	    cmocka_unit_test(test_requests_to_ignore_or_refuse),
	    cmocka_unit_test(test_sync_engine),
	    cmocka_unit_test(test_worker_without_a_source),
	    cmocka_unit_test(test_idle_worker_sleeps),
	    cmocka_unit_test(test_shutdown_refuses_requests),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

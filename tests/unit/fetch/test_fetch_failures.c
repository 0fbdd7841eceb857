/* What goes wrong: source failures retried then Failed (and a later request
 * trying again), disk and metadata write failures failing the stripe rather
 * than leaving I/O waiting, and the start-up checks. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "fetch_test_util.h"

#define HAS_SOURCE META_HEADER_HAS_SOURCE
#define FETCHED	   META_HEADER_FETCHED
#define WRITTEN	   META_HEADER_WRITTEN

static void test_four_failures_mark_failed_then_request_again(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.fail_stripe = 2;
	o.fail_times = FETCH_MAX_RETRIES + 1;
	fixture_start(&fx, &o);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 2), 0);
	wait_until(&fx, stripe_is_failed, 2);
	assert_int_equal(fx.request_counts[2], FETCH_MAX_RETRIES + 1);
	assert_int_equal(file_header(&fx, 2), HAS_SOURCE);
	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	assert_int_equal(st.fetch_failures, FETCH_MAX_RETRIES + 1);
	assert_int_equal(st.stripes_fetched, 0);
	assert_int_equal(st.metadata_writes, 0);

	/* Failed is not final: asking again copies it (the source recovered). */
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 2), 0);
	wait_until(&fx, stripe_is_fetched, 2);
	assert_int_equal(fx.request_counts[2], FETCH_MAX_RETRIES + 2);
	assert_int_equal(file_header(&fx, 2), HAS_SOURCE | FETCHED);
	assert_stripe_copied(&fx, 2);
	fixture_teardown(&fx);
}

static void test_three_failures_are_retried(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.fail_stripe = 6;
	o.fail_times = FETCH_MAX_RETRIES;
	fixture_start(&fx, &o);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 6), 0);
	wait_until(&fx, stripe_is_fetched, 6);
	assert_int_equal(fx.request_counts[6], FETCH_MAX_RETRIES + 1);
	assert_stripe_copied(&fx, 6);
	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	assert_int_equal(st.fetch_failures, FETCH_MAX_RETRIES);
	assert_int_equal(st.stripes_fetched, 1);
	fixture_teardown(&fx);
}

/* The failing stripe does not hold up the others in the autofetch walk. */
static void test_autofetch_around_a_failing_stripe(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.fail_stripe = 0;
	o.fail_times = 100;
	o.autofetch = true;
	fixture_start(&fx, &o);
	wait_until(&fx, stripe_is_failed, 0);
	for (uint64_t s = 1; s < fx.image_stripes; s++)
		wait_until(&fx, stripe_is_fetched, s);
	assert_int_equal(fx.request_counts[0], FETCH_MAX_RETRIES + 1);
	/* Not everything is fetched: the source stays open. */
	assert_true(fetch_worker_has_source(fx.worker));
	fixture_teardown(&fx);
}

static void test_disk_write_failure_fails_the_stripe(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.disk_read_only = true;
	fixture_start(&fx, &o);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 1), 0);
	wait_until(&fx, stripe_is_failed, 1);
	assert_int_equal(fx.request_counts[1], FETCH_MAX_RETRIES + 1);
	assert_int_equal(file_header(&fx, 1), HAS_SOURCE);
	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	assert_int_equal(st.fetch_failures, FETCH_MAX_RETRIES + 1);
	assert_int_equal(st.metadata_writes, 0);
	fixture_teardown(&fx);
}

/* A metadata update that cannot be stored is retried, then the stripe
 * fails: its data was copied, but without a durable FETCHED bit a guest
 * write to it would be lost after a restart (the stripe would be copied
 * again over it), so it must not be served as fetched. */
static void test_metadata_failure_fails_the_stripe(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.metadata_read_only = true;
	fixture_start(&fx, &o);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 1), 0);
	wait_until(&fx, stripe_is_failed, 1);
	assert_int_equal(fx.request_counts[1], 1);
	assert_int_equal(file_header(&fx, 1), HAS_SOURCE);
	struct fetch_stats st;
	fetch_worker_stats(fx.worker, &st);
	assert_int_equal(st.metadata_failures, 4);
	assert_int_equal(st.metadata_writes, 4);
	assert_int_equal(st.stripes_fetched, 0);
	assert_int_equal(st.fetch_failures, 0);

	/* WRITTEN likewise: the write waiting for it must fail, not hang. */
	assert_int_equal(fetch_worker_request_written(fx.worker, 3), 0);
	wait_until(&fx, stripe_is_failed, 3);
	assert_false(stripe_is_written(&fx, 3));
	assert_int_equal(file_header(&fx, 3), HAS_SOURCE);

	/* A stripe without a source whose WRITTEN failed is never fetched. */
	assert_int_equal(fetch_worker_request_written(fx.worker, 40), 0);
	wait_until(&fx, stripe_is_failed, 40);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 40), 0);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 3), 0);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 1), 0);
	wait_until(&fx, stripe_is_failed, 1);
	fixture_teardown(&fx);
}

static int start_with(struct fixture *fx, struct bdev *disk, struct stripe_source *source,
		      struct error *err)
{
	struct fetch_worker_options wo = {
	    .disk = disk,
	    .metadata = fx->metadata,
	    .source = source,
	    .state = fx->state,
	    .autofetch = true,
	};
	struct fetch_worker *w = NULL;
	int rc = fetch_worker_start(&wo, &w, err);
	assert_null(w);
	return rc;
}

static void test_start_refuses_a_disk_smaller_than_the_source(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.disk_sectors = 1024;
	o.image_sectors = 2048;
	fixture_files(&fx, &o);
	struct error err = {0};
	assert_int_equal(start_with(&fx, fx.disk, fixture_source(&fx), &err), -EINVAL);
	assert_string_equal(err.text,
			    "target device too small: disk 1024 sectors, source 2048 sectors");
	fixture_teardown(&fx);
}

/* The state describes a 64-stripe disk and the file holds 512 headers; a
 * bigger disk device and a 600-stripe source fit each other but not the
 * metadata. */
static void test_start_refuses_a_source_beyond_the_metadata(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_files(&fx, &o);
	struct bdev *big_disk, *big_image;
	assert_int_equal(bdev_open_null(700 * 64, &big_disk), 0);
	assert_int_equal(bdev_open_null(600 * 64, &big_image), 0);
	struct stripe_source *src;
	assert_int_equal(stripe_source_raw(big_image, 64, &src), 0);
	struct error err = {0};
	assert_int_equal(start_with(&fx, big_disk, src, &err), -EINVAL);
	assert_string_equal(err.text, "source stripe count 600 exceeds metadata stripe count 512");
	bdev_close(big_disk);
	bdev_close(big_image);
	fixture_teardown(&fx);
}

static void test_start_refuses_another_stripe_size(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_files(&fx, &o);
	struct stripe_source *src;
	assert_int_equal(stripe_source_raw(fx.image, 128, &src), 0);
	struct error err = {0};
	assert_int_equal(start_with(&fx, fx.disk, src, &err), -EINVAL);
	assert_string_equal(err.text,
			    "source stripe size 128 sectors does not match the metadata's 64");
	fixture_teardown(&fx);
}

static void test_start_refuses_a_bad_metadata_file(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	fixture_files(&fx, &o);
	char zero_path[TEST_PATH_MAX];
	make_test_file(zero_path, 8192, 0);
	struct bdev_file_options fo = {
	    .path = zero_path, .engine = BDEV_ENGINE_IO_URING, .direct = true, .queue_depth = 4};
	struct bdev *zeros;
	assert_int_equal(bdev_open_file(&fo, &zeros, NULL), 0);
	struct fetch_worker_options wo = {
	    .disk = fx.disk, .metadata = zeros, .source = fixture_source(&fx), .state = fx.state};
	struct fetch_worker *w = NULL;
	struct error err = {0};
	assert_true(fetch_worker_start(&wo, &w, &err) < 0);
	assert_null(w);
	assert_non_null(strstr(err.text, "magic"));
	bdev_close(zeros);
	unlink(zero_path);

	/* Missing pieces are refused; the source is freed either way. */
	wo.metadata = fx.metadata;
	wo.state = NULL;
	wo.source = fixture_source(&fx);
	assert_int_equal(fetch_worker_start(&wo, &w, &err), -EINVAL);
	assert_int_equal(fetch_worker_start(NULL, &w, &err), -EINVAL);
	fixture_teardown(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_four_failures_mark_failed_then_request_again),
	    cmocka_unit_test(test_three_failures_are_retried),
	    cmocka_unit_test(test_autofetch_around_a_failing_stripe),
	    cmocka_unit_test(test_disk_write_failure_fails_the_stripe),
	    cmocka_unit_test(test_metadata_failure_fails_the_stripe),
	    cmocka_unit_test(test_start_refuses_a_disk_smaller_than_the_source),
	    cmocka_unit_test(test_start_refuses_a_source_beyond_the_metadata),
	    cmocka_unit_test(test_start_refuses_another_stripe_size),
	    cmocka_unit_test(test_start_refuses_a_bad_metadata_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Requests that must fail (or succeed without touching anything) instead of
 * crashing or waiting forever: failed stripes, no worker, a worker shut down,
 * zero-length and out-of-range requests, a submission the kernel refuses. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "uring_submit_faults.h"
#include "common/common.h"
#include "lazy_test_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fixture {
	struct lazy_env env;
	struct bdev_channel *ch;
};

static int open_fixture(void **state, const struct lazy_setup *setup)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	lazy_env_open(&f->env, setup);
	assert_int_equal(bdev_channel_create(f->env.lazy, 16, &f->ch), 0);
	*state = f;
	return 0;
}

/* Stripe 3's source read fails on every attempt (1 + 3 retries). */
static int setup_failing_stripe(void **state)
{
	return open_fixture(state, &(struct lazy_setup){.copy_on_read = true,
							.fail_stripe = FAIL_STRIPE(3),
							.fail_times = 4});
}

/* Stripe 1 fetched already, stripe 3 without source. */
static int setup_no_worker(void **state)
{
	struct lazy_setup s = {.copy_on_read = true, .track_written = true, .no_worker = true};
	s.preset[1] = META_HEADER_FETCHED;
	s.preset[2] = 0;
	s.image_sectors = 3 * STRIPE_SECTORS;
	return open_fixture(state, &s);
}

static int setup_plain(void **state)
{
	return open_fixture(state, &(struct lazy_setup){.copy_on_read = true});
}

/* The stripe state (as from a metadata file) covers 3 of the disk's 4
 * stripes; the image covers 3 stripes too. */
static int setup_short_metadata(void **state)
{
	return open_fixture(state, &(struct lazy_setup){.copy_on_read = true,
							.state_sectors = 3 * STRIPE_SECTORS,
							.image_sectors = 3 * STRIPE_SECTORS});
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	bdev_channel_destroy(f->ch);
	lazy_env_close(&f->env);
	free(f);
	return 0;
}

/* A completion that must come at once, without any sleep on the fd. */
static int immediate_result(struct bdev_channel *ch, uint64_t id)
{
	assert_int_equal(bdev_submit(ch), 0);
	struct bdev_completion c;
	assert_int_equal(bdev_poll(ch, &c, 1), 1);
	assert_int_equal(c.id, id);
	assert_false(bdev_busy(ch));
	return c.result;
}

static void test_failed_stripe_fails_requests(void **state)
{
	struct fixture *f = *state;
	struct lazy_env *env = &f->env;
	uint64_t s3 = 3 * STRIPE_SECTORS;
	assert_int_equal(lazy_read(f->ch, s3, env->buf, 4096, 1), BDEV_ERR_STRIPE_FAILED);
	assert_int_equal(stripe_state_fetch(env->state, 3), STRIPE_FAILED);
	assert_int_equal(env->source_reads[3], 4);
	assert_int_equal(metadata_header(env, 3), META_HEADER_HAS_SOURCE);
	assert_true(disk_untouched(env, s3, STRIPE_SECTORS));

	/* From now on at once, reads and writes alike, also across stripes. */
	struct iovec iov = {env->buf, 4096};
	bdev_add_writev(f->ch, s3 + 8, &iov, 1, 2);
	assert_int_equal(immediate_result(f->ch, 2), BDEV_ERR_STRIPE_FAILED);
	struct iovec both = {env->buf, 8192};
	bdev_add_readv(f->ch, s3 - 8, &both, 1, 3);
	assert_int_equal(immediate_result(f->ch, 3), BDEV_ERR_STRIPE_FAILED);
	bdev_add_discard(f->ch, s3, 8, 4);
	assert_int_equal(immediate_result(f->ch, 4), BDEV_ERR_STRIPE_FAILED);
	assert_true(disk_untouched(env, s3, STRIPE_SECTORS));
	assert_int_equal(env->source_reads[3], 4);

	/* The other stripes are fine. */
	assert_int_equal(lazy_read(f->ch, 2 * STRIPE_SECTORS, env->buf, 4096, 5), 0);
	assert_int_equal(stripe_state_fetch(env->state, 2), STRIPE_FETCHED);
}

/* Several requests queued behind a stripe that fails: all complete, once. */
static void test_queued_requests_fail_once(void **state)
{
	struct fixture *f = *state;
	struct lazy_env *env = &f->env;
	struct iovec iov[4];
	for (int i = 0; i < 4; i++) {
		iov[i] = (struct iovec){env->buf + i * 4096, 4096};
		bdev_add_readv(f->ch, 3 * STRIPE_SECTORS + (uint64_t)i * 8, &iov[i], 1,
			       (uint64_t)i);
	}
	/* Queued behind the failing one in FIFO order, on a good stripe. */
	struct iovec good = {env->buf + 4 * 4096, 4096};
	bdev_add_readv(f->ch, 0, &good, 1, 4);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c[6];
	wait_by_completion_fd(f->ch, c, 5);
	unsigned seen = 0;
	for (int i = 0; i < 5; i++) {
		assert_true(c[i].id < 5);
		assert_false(seen & (1u << c[i].id));
		seen |= 1u << c[i].id;
		assert_int_equal(c[i].result, c[i].id == 4 ? 0 : BDEV_ERR_STRIPE_FAILED);
	}
	assert_false(bdev_busy(f->ch));
	assert_int_equal(bdev_poll(f->ch, c, 6), 0);
}

/* Queued requests issued to the disk when their stripe arrives, with the
 * kernel refusing the submission for a while: each still completes exactly
 * once, successfully, and meanwhile the channel says it must not sleep
 * (failing them on the refused submit would complete them twice). */
static void test_refused_submit_completes_once(void **state)
{
	struct fixture *f = *state;
	struct lazy_env *env = &f->env;
	struct iovec iov[4];
	for (int i = 0; i < 4; i++) {
		iov[i] = (struct iovec){env->buf + i * 4096, 4096};
		bdev_add_readv(f->ch, STRIPE_SECTORS + (uint64_t)i * 8, &iov[i], 1, (uint64_t)i);
	}
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c[5];
	assert_int_equal(bdev_poll(f->ch, c, 5), 0);
	for (int waited = 0; stripe_state_fetch(env->state, 1) != STRIPE_FETCHED; waited++) {
		assert_true(waited < 10000);
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	__atomic_store_n(&bdev_uring_fail_submits, 3, __ATOMIC_RELAXED);
	/* Issues the four reads; the submit and the retry inside the poll are
	 * refused. */
	assert_int_equal(bdev_poll(f->ch, c, 5), 0);
	assert_true(bdev_needs_submit(f->ch));
	int got = 0;
	unsigned seen = 0;
	/* A time limit, not a spin count: under load the disk may take a while. */
	uint64_t deadline = now_ns() + 10ull * 1000000000ull;
	while (got < 4) {
		assert_true(now_ns() < deadline);
		int n = bdev_poll(f->ch, c, 5);
		for (int i = 0; i < n; i++) {
			assert_true(c[i].id < 4);
			assert_false(seen & (1u << c[i].id));
			seen |= 1u << c[i].id;
			assert_int_equal(c[i].result, 0);
		}
		got += n;
	}
	assert_int_equal(__atomic_load_n(&bdev_uring_fail_submits, __ATOMIC_RELAXED), 0);
	assert_false(bdev_needs_submit(f->ch));
	assert_false(bdev_busy(f->ch));
	assert_int_equal(bdev_poll(f->ch, c, 5), 0);
	unsigned char expect[4096];
	expected_fetched(env, STRIPE_SECTORS, 8, expect);
	assert_memory_equal(env->buf, expect, 4096);
}

static void test_without_worker(void **state)
{
	struct fixture *f = *state;
	struct lazy_env *env = &f->env;
	struct iovec iov = {env->buf, 4096};
	/* Unfetched: cannot be fetched. */
	bdev_add_readv(f->ch, 0, &iov, 1, 1);
	assert_int_equal(immediate_result(f->ch, 1), -EIO);
	bdev_add_writev(f->ch, 0, &iov, 1, 2);
	assert_int_equal(immediate_result(f->ch, 2), -EIO);
	/* Fetched, or without source: reads go to the disk. */
	assert_int_equal(lazy_read(f->ch, STRIPE_SECTORS, env->buf, 4096, 3), 0);
	assert_int_equal(env->buf[0], DISK_FILL);
	assert_int_equal(lazy_read(f->ch, 3 * STRIPE_SECTORS, env->buf, 4096, 4), 0);
	/* track_written: nobody can make WRITTEN durable, so the write fails
	 * and the disk never sees it. */
	memset(env->buf, 0x42, 4096);
	bdev_add_writev(f->ch, STRIPE_SECTORS, &iov, 1, 5);
	assert_int_equal(immediate_result(f->ch, 5), -EIO);
	assert_true(disk_untouched(env, STRIPE_SECTORS, STRIPE_SECTORS));
	/* A flush needs no worker. */
	assert_int_equal(lazy_flush(f->ch, 6), 0);
}

/* After fetch_worker_shutdown, new requests that need the worker fail, and
 * requests already waiting are failed by the worker instead of hanging. */
static void test_worker_shut_down(void **state)
{
	struct fixture *f = *state;
	struct lazy_env *env = &f->env;
	assert_int_equal(lazy_read(f->ch, 0, env->buf, 4096, 1), 0);
	fetch_worker_shutdown(env->worker);
	struct iovec iov = {env->buf, 4096};
	bdev_add_readv(f->ch, STRIPE_SECTORS, &iov, 1, 2);
	assert_int_equal(immediate_result(f->ch, 2), -EIO);
	assert_int_equal(lazy_read(f->ch, 8, env->buf, 4096, 3), 0);
}

static void test_zero_length_touches_nothing(void **state)
{
	struct fixture *f = *state;
	struct lazy_env *env = &f->env;
	struct iovec empty = {env->buf, 0};
	bdev_add_readv(f->ch, 0, &empty, 1, 1);
	assert_int_equal(immediate_result(f->ch, 1), 0);
	bdev_add_writev(f->ch, STRIPE_SECTORS, &empty, 1, 2);
	assert_int_equal(immediate_result(f->ch, 2), 0);
	bdev_add_write_zeroes(f->ch, TEST_DISK_SECTORS, 0, false, 3);
	assert_int_equal(immediate_result(f->ch, 3), 0);
	for (unsigned i = 0; i < TEST_STRIPES; i++) {
		assert_int_equal(stripe_state_fetch(env->state, i), STRIPE_NOT_FETCHED);
		assert_int_equal(env->source_reads[i], 0);
	}
	assert_true(disk_untouched(env, 0, TEST_DISK_SECTORS));
}

static void test_out_of_range_fails(void **state)
{
	struct fixture *f = *state;
	struct lazy_env *env = &f->env;
	struct iovec two = {env->buf, 8192};
	bdev_add_readv(f->ch, TEST_DISK_SECTORS - 8, &two, 1, 1); /* crosses the end */
	assert_int_equal(immediate_result(f->ch, 1), -EIO);
	bdev_add_writev(f->ch, TEST_DISK_SECTORS, &two, 1, 2);
	assert_int_equal(immediate_result(f->ch, 2), -EIO);
	bdev_add_readv(f->ch, 1ull << 40, &two, 1, 3);
	assert_int_equal(immediate_result(f->ch, 3), -EIO);
	bdev_add_discard(f->ch, TEST_DISK_SECTORS - 1, 2, 4);
	assert_int_equal(immediate_result(f->ch, 4), -EIO);
	assert_int_equal(stripe_state_fetch(env->state, TEST_STRIPES - 1), STRIPE_NOT_FETCHED);
	/* The last sector itself is fine. */
	assert_int_equal(lazy_read(f->ch, TEST_DISK_SECTORS - 1, env->buf, 512, 5), 0);
}

static void test_beyond_the_metadata_stripes(void **state)
{
	struct fixture *f = *state;
	struct lazy_env *env = &f->env;
	assert_int_equal(bdev_sector_count(env->lazy), TEST_DISK_SECTORS);
	struct iovec iov = {env->buf, 4096};
	bdev_add_readv(f->ch, 3 * STRIPE_SECTORS, &iov, 1, 1);
	assert_int_equal(immediate_result(f->ch, 1), -EIO);
	bdev_add_writev(f->ch, 3 * STRIPE_SECTORS - 4, &iov, 1, 2);
	assert_int_equal(immediate_result(f->ch, 2), -EIO);
	assert_int_equal(lazy_read(f->ch, 2 * STRIPE_SECTORS, env->buf, 4096, 3), 0);
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_failed_stripe_fails_requests, setup_failing_stripe,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_queued_requests_fail_once, setup_failing_stripe,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_refused_submit_completes_once, setup_plain,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_without_worker, setup_no_worker, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_shut_down, setup_plain, teardown),
	    cmocka_unit_test_setup_teardown(test_zero_length_touches_nothing, setup_plain,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_range_fails, setup_plain, teardown),
	    cmocka_unit_test_setup_teardown(test_beyond_the_metadata_stripes, setup_short_metadata,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

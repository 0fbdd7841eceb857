/* A front end sleeping on a lazy channel's completion fd is woken when its
 * queued requests may proceed (the worker's notification), when the disk or
 * the image completes, and the fd goes quiet again once nothing is pending,
 * for every combination of disk and image engines. Also: several channels,
 * a channel destroyed while requests wait, and autofetch. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "lazy_test_util.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int setup_uring(void **state)
{
	return lazy_fixture_open(state, &(struct lazy_setup){.copy_on_read = true});
}

static int setup_uring_image(void **state)
{
	return lazy_fixture_open(state, &(struct lazy_setup){.copy_on_read = false});
}

static int setup_sync(void **state)
{
	return lazy_fixture_open(
	    state, &(struct lazy_setup){.copy_on_read = true, .engine = BDEV_ENGINE_SYNC});
}

static int setup_sync_image(void **state)
{
	return lazy_fixture_open(state, &(struct lazy_setup){.engine = BDEV_ENGINE_SYNC});
}

static int setup_autofetch(void **state)
{
	return lazy_fixture_open(state,
				 &(struct lazy_setup){.copy_on_read = true, .autofetch = true});
}

static void sleep_ms(long ms)
{
	struct timespec ts = {0, ms * 1000000};
	nanosleep(&ts, NULL);
}

/* Once nothing is pending, a poll that finds nothing leaves the fd quiet: a
 * front end can sleep on it without spinning. (Retried briefly, in case the
 * worker's last notification is still on its way.) */
static void assert_goes_quiet(struct bdev_channel *ch)
{
	int fd = bdev_completion_fd(ch);
	for (int attempt = 0; attempt < 50; attempt++) {
		struct bdev_completion c;
		assert_int_equal(bdev_poll(ch, &c, 1), 0);
		uint64_t value;
		if (read(fd, &value, sizeof(value)) < 0)
			assert_true(errno == EAGAIN || errno == EINVAL);
		assert_int_equal(bdev_poll(ch, &c, 1), 0);
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 0) == 0)
			return;
		sleep_ms(10);
	}
	fail_msg("the completion fd stays readable with nothing pending");
}

static void test_fetch_wakes_the_channel(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	assert_goes_quiet(f->ch);
	/* Across two stripes: a fetch even with an image. */
	struct iovec iov = {env->buf, 8192};
	bdev_add_readv(f->ch, 2 * STRIPE_SECTORS - 8, &iov, 1, 7);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c;
	int sleeps = wait_by_completion_fd(f->ch, &c, 1);
	assert_true(sleeps >= 1);
	assert_int_equal(c.id, 7);
	assert_int_equal(c.result, 0);
	expected_fetched(env, 2 * STRIPE_SECTORS - 8, 16, f->expect);
	assert_memory_equal(env->buf, f->expect, 8192);
	assert_goes_quiet(f->ch);
}

/* The image's completions wake the channel too (with io_uring they arrive
 * on the image channel's own eventfd). */
static void test_image_read_wakes_the_channel(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	assert_int_equal(lazy_read(f->ch, 3 * STRIPE_SECTORS, env->buf, STRIPE_BYTES, 1), 0);
	expected_fetched(env, 3 * STRIPE_SECTORS, STRIPE_SECTORS, f->expect);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
	assert_int_equal(env->source_reads[3], 0);
	assert_goes_quiet(f->ch);
	/* Disk completions still wake it. */
	assert_int_equal(lazy_write(f->ch, 0, env->buf, 4096, 2), 0);
	assert_int_equal(lazy_read(f->ch, 0, env->buf + 4096, 4096, 3), 0);
	assert_memory_equal(env->buf, env->buf + 4096, 4096);
	assert_goes_quiet(f->ch);
}

/* Two channels (two front-end threads) waiting for the same stripe: both
 * are woken, the stripe is read from the source once. */
static void test_two_channels_wait_for_one_stripe(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	struct bdev_channel *other;
	assert_int_equal(bdev_channel_create(env->lazy, 4, &other), 0);
	struct iovec a = {env->buf, 4096}, b = {env->buf + 4096, 4096};
	bdev_add_readv(f->ch, STRIPE_SECTORS, &a, 1, 1);
	bdev_add_readv(other, STRIPE_SECTORS + 8, &b, 1, 2);
	assert_int_equal(bdev_submit(f->ch), 0);
	assert_int_equal(bdev_submit(other), 0);
	struct bdev_completion c;
	wait_by_completion_fd(other, &c, 1);
	assert_int_equal(c.result, 0);
	wait_by_completion_fd(f->ch, &c, 1);
	assert_int_equal(c.result, 0);
	expected_fetched(env, STRIPE_SECTORS, 16, f->expect);
	assert_memory_equal(env->buf, f->expect, 8192);
	assert_int_equal(env->source_reads[1], 1);
	bdev_channel_destroy(other);
}

/* A channel may go away with requests still waiting: they are dropped, the
 * worker finishes the fetch, and a new channel finds the stripe fetched. */
static void test_destroy_with_waiting_requests(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	struct bdev_channel *doomed;
	assert_int_equal(bdev_channel_create(env->lazy, 4, &doomed), 0);
	struct iovec iov = {env->buf, 4096};
	bdev_add_readv(doomed, 2 * STRIPE_SECTORS, &iov, 1, 1);
	assert_int_equal(bdev_submit(doomed), 0);
	struct bdev_completion c;
	assert_int_equal(bdev_poll(doomed, &c, 1), 0);
	assert_true(bdev_busy(doomed));
	bdev_channel_destroy(doomed);

	assert_int_equal(lazy_read(f->ch, 2 * STRIPE_SECTORS, env->buf, 4096, 2), 0);
	expected_fetched(env, 2 * STRIPE_SECTORS, 8, f->expect);
	assert_memory_equal(env->buf, f->expect, 4096);
	assert_int_equal(env->source_reads[2], 1);
}

/* Autofetch copies every stripe without any request; reads then come from
 * the disk and never ask the source again. */
static void test_autofetch_fills_the_disk(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	for (int waited = 0;; waited += 10) {
		uint64_t total, source, fetched;
		stripe_state_counts(env->state, &total, &source, &fetched);
		if (fetched == source)
			break;
		if (waited > 10000)
			fail_msg("autofetch fetched %llu of %llu stripes",
				 (unsigned long long)fetched, (unsigned long long)source);
		sleep_ms(10);
	}
	assert_int_equal(lazy_read(f->ch, 0, env->buf, 4 * STRIPE_BYTES, 1), 0);
	expected_fetched(env, 0, TEST_DISK_SECTORS, f->expect);
	assert_memory_equal(env->buf, f->expect, 4 * STRIPE_BYTES);
	for (unsigned i = 0; i < TEST_STRIPES; i++)
		assert_int_equal(env->source_reads[i], 1);
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fetch_wakes_the_channel, setup_uring,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_fetch_wakes_the_channel, setup_uring_image,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_fetch_wakes_the_channel, setup_sync,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_fetch_wakes_the_channel, setup_sync_image,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_image_read_wakes_the_channel, setup_uring_image,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_image_read_wakes_the_channel, setup_sync_image,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_two_channels_wait_for_one_stripe, setup_uring,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_destroy_with_waiting_requests, setup_uring,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_autofetch_fills_the_disk, setup_autofetch,
					    lazy_fixture_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

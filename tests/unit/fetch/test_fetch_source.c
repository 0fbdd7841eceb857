/* Stripe sources on their own: the raw source over a real image (partial last
 * stripe zero-filled, out-of-range refused), the none source, and the flaky
 * test wrapper. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "fetch/source_internal.h"
#include "fetch_test_util.h"

#define STRIPE_SHIFT   6u
#define STRIPE_SECTORS (1u << STRIPE_SHIFT)
#define STRIPE_BYTES   (STRIPE_SECTORS * SECTOR_SIZE)

static struct source_completion wait_one(struct stripe_source *src)
{
	struct source_completion c;
	for (int i = 0; i < 5000; i++) {
		if (source_poll(src, &c, 1) == 1)
			return c;
		assert_true(source_busy(src));
		int fd = source_completion_fd(src);
		if (fd >= 0) {
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			if (poll(&pfd, 1, 1) == 1) {
				uint64_t v;
				assert_int_equal(read(fd, &v, sizeof(v)), (ssize_t)sizeof(v));
			}
		}
	}
	fail_msg("no completion from the source");
	return c;
}

/* A 100-sector image: stripe 0 is full, stripe 1 has 36 sectors. */
static void test_raw_reads_and_zero_fills_partial_stripe(void **state)
{
	struct fixture_options o = fixture_defaults();
	o.image_sectors = 100;
	o.disk_sectors = 128;
	struct fixture fx;
	fixture_files(&fx, &o);
	struct stripe_source *src;
	assert_int_equal(stripe_source_raw(fx.image, STRIPE_SECTORS, &src), 0);
	assert_int_equal(stripe_source_sector_count(src), 100);
	assert_true(stripe_source_has_stripe(src, 0));
	assert_true(stripe_source_has_stripe(src, 1));
	assert_false(stripe_source_has_stripe(src, 2));
	assert_int_equal(source_open(src), 0);

	uint8_t *buf = buffer_alloc(4096, STRIPE_BYTES);
	assert_non_null(buf);
	memset(buf, 0xaa, STRIPE_BYTES);
	assert_int_equal(source_request(src, 0, buf), 0);
	struct source_completion c = wait_one(src);
	assert_int_equal(c.stripe, 0);
	assert_int_equal(c.result, 0);
	assert_memory_equal(buf, fx.image_data, STRIPE_BYTES);

	/* The same buffer, still holding stripe 0: the tail must not leak. */
	assert_int_equal(source_request(src, 1, buf), 0);
	c = wait_one(src);
	assert_int_equal(c.stripe, 1);
	assert_int_equal(c.result, 0);
	assert_memory_equal(buf, fx.image_data + STRIPE_BYTES, 36 * SECTOR_SIZE);
	for (size_t i = 36 * SECTOR_SIZE; i < STRIPE_BYTES; i++)
		assert_int_equal(buf[i], 0);
	assert_false(source_busy(src));

	/* Starting past the end is refused at once, with no completion. */
	assert_int_equal(source_request(src, 2, buf), -EINVAL);
	assert_int_equal(source_request(src, UINT64_MAX, buf), -EINVAL);
	assert_false(source_busy(src));

	source_close(src);
	stripe_source_destroy(src);
	buffer_free(buf);
	fixture_teardown(&fx);
}

static void test_raw_works_with_the_sync_engine(void **state)
{
	struct fixture_options o = fixture_defaults();
	o.engine = BDEV_ENGINE_SYNC;
	struct fixture fx;
	fixture_files(&fx, &o);
	struct stripe_source *src;
	assert_int_equal(stripe_source_raw(fx.image, STRIPE_SECTORS, &src), 0);
	assert_int_equal(source_open(src), 0);
	assert_int_equal(source_completion_fd(src), -1);
	uint8_t *buf = buffer_alloc(4096, STRIPE_BYTES);
	assert_int_equal(source_request(src, 5, buf), 0);
	struct source_completion c = wait_one(src);
	assert_int_equal(c.stripe, 5);
	assert_int_equal(c.result, 0);
	assert_memory_equal(buf, fx.image_data + 5 * STRIPE_BYTES, STRIPE_BYTES);
	buffer_free(buf);
	/* Destroying an open source closes it. */
	stripe_source_destroy(src);
	fixture_teardown(&fx);
}

static void test_raw_refuses_bad_arguments(void **state)
{
	struct stripe_source *src = NULL;
	assert_int_equal(stripe_source_raw(NULL, STRIPE_SECTORS, &src), -EINVAL);
	struct bdev *null_dev;
	assert_int_equal(bdev_open_null(1000, &null_dev), 0);
	assert_int_equal(stripe_source_raw(null_dev, 0, &src), -EINVAL);
	assert_int_equal(stripe_source_raw(null_dev, 48, &src), -EINVAL);
	assert_null(src);
	/* Unopened: a request cannot go anywhere. */
	assert_int_equal(stripe_source_raw(null_dev, STRIPE_SECTORS, &src), 0);
	uint8_t *buf = buffer_alloc(4096, STRIPE_BYTES);
	assert_int_equal(source_request(src, 0, buf), -ENOTCONN);
	stripe_source_destroy(src);
	buffer_free(buf);
	bdev_close(null_dev);
}

static void test_none_source_is_empty(void **state)
{
	struct stripe_source *src;
	assert_int_equal(stripe_source_none(STRIPE_SECTORS, &src), 0);
	assert_int_equal(stripe_source_sector_count(src), 0);
	assert_false(stripe_source_has_stripe(src, 0));
	assert_int_equal(source_open(src), 0);
	uint8_t *buf = buffer_alloc(4096, STRIPE_BYTES);
	assert_int_equal(source_request(src, 0, buf), -EINVAL);
	struct source_completion c;
	assert_int_equal(source_poll(src, &c, 1), 0);
	assert_false(source_busy(src));
	assert_int_equal(source_completion_fd(src), -1);
	source_close(src);
	stripe_source_destroy(src);
	buffer_free(buf);
}

static void test_flaky_fails_then_succeeds_and_counts(void **state)
{
	struct fixture_options o = fixture_defaults();
	struct fixture fx;
	fixture_files(&fx, &o);
	struct stripe_source *raw, *src;
	assert_int_equal(stripe_source_raw(fx.image, STRIPE_SECTORS, &raw), 0);
	assert_int_equal(stripe_source_flaky(raw, 3, 2, fx.request_counts, &src), 0);
	assert_int_equal(stripe_source_sector_count(src), o.image_sectors);
	assert_true(stripe_source_has_stripe(src, 31));
	assert_false(stripe_source_has_stripe(src, 32));
	assert_int_equal(source_open(src), 0);
	uint8_t *buf = buffer_alloc(4096, STRIPE_BYTES);
	int results[4];
	for (int i = 0; i < 4; i++) {
		assert_int_equal(source_request(src, 3, buf), 0);
		struct source_completion c = wait_one(src);
		assert_int_equal(c.stripe, 3);
		results[i] = c.result;
	}
	assert_int_equal(results[0], -EIO);
	assert_int_equal(results[1], -EIO);
	assert_int_equal(results[2], 0);
	assert_int_equal(results[3], 0);
	/* Other stripes are never affected. */
	assert_int_equal(source_request(src, 4, buf), 0);
	assert_int_equal(wait_one(src).result, 0);
	assert_int_equal(fx.request_counts[3], 4);
	assert_int_equal(fx.request_counts[4], 1);
	assert_int_equal(total_requests(&fx), 5);
	/* Past the end: refused, and there is no counter for it. */
	assert_int_equal(source_request(src, 32, buf), -EINVAL);
	assert_int_equal(total_requests(&fx), 5);
	source_close(src);
	stripe_source_destroy(src);
	buffer_free(buf);
	fixture_teardown(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_raw_reads_and_zero_fills_partial_stripe),
	    cmocka_unit_test(test_raw_works_with_the_sync_engine),
	    cmocka_unit_test(test_raw_refuses_bad_arguments),
	    cmocka_unit_test(test_none_source_is_empty),
	    cmocka_unit_test(test_flaky_fails_then_succeeds_and_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The iovec cursor that continues short transfers. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev/iov_cursor.h"

static char buf[4096];

static void assert_pending(struct iov_cursor *c, const struct iovec *iov, int iovcnt)
{
	const struct iovec *p;
	int n;
	iov_cursor_pending(c, &p, &n);
	assert_int_equal(n, iovcnt);
	for (int i = 0; i < n; i++) {
		assert_ptr_equal(p[i].iov_base, iov[i].iov_base);
		assert_int_equal(p[i].iov_len, iov[i].iov_len);
	}
}

static void test_whole_transfer_in_one_step(void **state)
{
	struct iovec iov[2] = {{buf, 512}, {buf + 512, 1024}};
	struct iov_cursor c;
	iov_cursor_init(&c, iov, 2);
	assert_pending(&c, iov, 2);
	assert_true(iov_cursor_advance(&c, 1536));
}

static void test_stop_inside_an_iovec_gives_its_rest(void **state)
{
	struct iovec iov[3] = {{buf, 1024}, {buf + 1024, 512}, {buf + 1536, 2048}};
	struct iov_cursor c;
	iov_cursor_init(&c, iov, 3);
	assert_false(iov_cursor_advance(&c, 512));
	struct iovec rest_of_first = {buf + 512, 512};
	assert_pending(&c, &rest_of_first, 1);
	assert_false(iov_cursor_advance(&c, 512));
	assert_pending(&c, iov + 1, 2); /* the caller's array again */
	assert_false(iov_cursor_advance(&c, 1024));
	struct iovec rest_of_last = {buf + 2048, 1536};
	assert_pending(&c, &rest_of_last, 1);
	assert_false(iov_cursor_advance(&c, 1535));
	assert_true(iov_cursor_advance(&c, 1));
}

static void test_empty_iovecs_are_skipped(void **state)
{
	struct iovec iov[5] = {
	    {buf, 512}, {buf + 512, 0}, {buf + 512, 0}, {buf + 512, 512}, {buf + 1024, 0}};
	struct iov_cursor c;
	iov_cursor_init(&c, iov, 5);
	assert_false(iov_cursor_advance(&c, 512));
	assert_pending(&c, iov + 3, 2);
	assert_true(iov_cursor_advance(&c, 512)); /* the trailing empty one is not waited for */
}

static void test_zero_progress_keeps_position(void **state)
{
	struct iovec iov[2] = {{buf, 512}, {buf + 512, 512}};
	struct iov_cursor c;
	iov_cursor_init(&c, iov, 2);
	assert_false(iov_cursor_advance(&c, 0));
	assert_pending(&c, iov, 2);
	assert_false(iov_cursor_advance(&c, 512));
	assert_false(iov_cursor_advance(&c, 0));
	assert_pending(&c, iov + 1, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_whole_transfer_in_one_step),
	    cmocka_unit_test(test_stop_inside_an_iovec_gives_its_rest),
	    cmocka_unit_test(test_empty_iovecs_are_skipped),
	    cmocka_unit_test(test_zero_progress_keeps_position),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

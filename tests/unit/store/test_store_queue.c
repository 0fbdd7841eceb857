/* The machinery every store shares, behind a test-only slow backend: order,
 * completions exactly once and the eventfd, the synchronous forms (busy,
 * timeouts, a timed-out request dropped when it completes), and closing
 * while requests are queued or in progress. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "store/store.h"
#include "store_slow.h"

static bool fd_readable(struct store *s, int timeout_ms)
{
	struct pollfd p = {.fd = store_completion_fd(s), .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void test_order_and_fd(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_slow_open(0, &s), 0);
	assert_int_equal(store_concurrency(s), 1);
	assert_false(fd_readable(s, 0));
	const char *names[] = {"a", "b/c", "d"};
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_get(s, names[i], 100, (uint64_t)(10 + i)), 0);
	assert_int_equal(store_pending(s), 3);
	struct store_completion c[4];
	int got = 0;
	while (got < 3) {
		assert_true(fd_readable(s, 10000));
		got += store_poll(s, c + got, 4 - got);
	}
	/* One thread: in the order started. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c[i].tag, 10 + i);
		assert_int_equal(c[i].result, 0);
		assert_int_equal(c[i].body_len, strlen(names[i]));
		assert_memory_equal(c[i].body, names[i], c[i].body_len);
		free(c[i].body);
	}
	assert_int_equal(store_pending(s), 0);
	assert_false(fd_readable(s, 50));
	assert_int_equal(store_poll(s, c, 4), 0);
	assert_int_equal(store_poll(s, c, 0), 0);
	store_close(s);
}

#define MANY 2000

static void test_exactly_once(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_slow_open(0, &s), 0);
	static int seen[MANY];
	memset(seen, 0, sizeof(seen));
	int started = 0, got = 0;
	/* Start and poll interleaved, a few at a time. */
	while (got < MANY) {
		for (int k = 0; k < 5 && started < MANY; k++, started++) {
			if (started % 2)
				assert_int_equal(store_head(s, "x", (uint64_t)started), 0);
			else
				assert_int_equal(
				    store_put(s, "x", (const uint8_t *)"y", 1, (uint64_t)started),
				    0);
		}
		struct store_completion c[3];
		int n = store_poll(s, c, 3);
		for (int i = 0; i < n; i++) {
			assert_true(c[i].tag < MANY);
			assert_int_equal(c[i].op, c[i].tag % 2 ? STORE_HEAD : STORE_PUT);
			assert_int_equal(seen[c[i].tag]++, 0);
		}
		got += n;
		assert_int_equal(store_pending(s), (size_t)(started - got));
		if (!n && started == MANY)
			assert_true(fd_readable(s, 10000));
	}
	assert_int_equal(store_slow_taken(s), MANY);
	store_close(s);
}

static void test_sync_busy(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_slow_open(0, &s), 0);
	assert_int_equal(store_get(s, "a", 10, 1), 0);
	struct error err = {0};
	uint8_t *body;
	size_t len;
	assert_int_equal(store_get_sync(s, "metadata.json", 10, 1000, &body, &len, &err), -EBUSY);
	assert_int_equal(store_put_sync(s, "metadata.json", (const uint8_t *)"x", 1, 1000, &err),
			 -EBUSY);
	assert_int_equal(store_pending(s), 1);
	store_close(s);
}

static void test_sync_timeout(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_slow_open(400, &s), 0);
	struct error err = {0};
	uint8_t *body = (uint8_t *)1;
	size_t len = 1;
	assert_int_equal(store_get_sync(s, "metadata.json", 100, 50, &body, &len, &err),
			 -ETIMEDOUT);
	assert_string_equal(err.text, "Timeout while getting object metadata.json");
	assert_null(body);
	assert_int_equal(len, 0);
	/* Given up: not pending, and its completion will never be polled. */
	assert_int_equal(store_pending(s), 0);

	/* The buffer may go as soon as the call returns. */
	uint8_t *data = malloc(100);
	assert_non_null(data);
	memset(data, 1, 100);
	assert_int_equal(store_put_sync(s, "stripe-hashes.json", data, 100, 50, &err), -ETIMEDOUT);
	assert_string_equal(err.text, "Timeout while putting object stripe-hashes.json");
	free(data);
	assert_int_equal(store_pending(s), 0);

	/* Both still run, after them this one. */
	store_slow_set_delay(s, 0);
	assert_int_equal(store_get_sync(s, "m", 100, 10000, &body, &len, &err), 0);
	assert_int_equal(len, 1);
	assert_int_equal(body[0], 'm');
	free(body);
	assert_int_equal(store_slow_taken(s), 3);
	struct store_completion c;
	assert_int_equal(store_poll(s, &c, 1), 0);
	assert_false(fd_readable(s, 0));

	/* A zero timeout gives up unless the completion is already there;
	 * the late completion is dropped. */
	assert_int_equal(store_put_sync(s, "m", (const uint8_t *)"1", 1, 0, &err), -ETIMEDOUT);
	sleep_ms(50);
	assert_int_equal(store_poll(s, &c, 1), 0);
	store_close(s);
}

/* Closing while a timed-out request is still in the backend. */
static void test_close_after_timeout(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_slow_open(200, &s), 0);
	struct error err = {0};
	assert_int_equal(store_put_sync(s, "m", (const uint8_t *)"1", 1, 10, &err), -ETIMEDOUT);
	store_close(s);
}

static void test_close_in_flight(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_slow_open(300, &s), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(store_get(s, "obj", 100, (uint64_t)i), 0);
	while (store_slow_taken(s) == 0)
		sleep_ms(1);
	/* Waits for the one in progress; the queued ones are cancelled. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	store_close(s);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	assert_true(ms < 1500); /* not 10 x 300 ms */

	/* Completed but never polled: dropped and freed. */
	assert_int_equal(store_slow_open(0, &s), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(store_get(s, "obj", 100, (uint64_t)i), 0);
	while (store_slow_taken(s) < 10)
		sleep_ms(1);
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_and_fd),	cmocka_unit_test(test_exactly_once),
	    cmocka_unit_test(test_sync_busy),		cmocka_unit_test(test_sync_timeout),
	    cmocka_unit_test(test_close_after_timeout), cmocka_unit_test(test_close_in_flight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

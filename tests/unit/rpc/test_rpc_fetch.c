/* `status`, `stats` and `metrics` with a real fetch worker over real files
 * (the fetch tests' fixture): the stripe counts follow the worker, and the
 * fetch statistics show stripes, bytes, failed attempts and latencies. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fetch_test_util.h"
#include "rpc/rpc_internal.h"

static json_t *ask(const struct rpc_context *ctx, const char *line)
{
	char *reply = rpc_reply(ctx, line, strlen(line));
	assert_non_null(reply);
	json_error_t err;
	json_t *root = json_loads(reply, 0, &err);
	if (!root)
		fail_msg("reply %s is not JSON: %s", reply, err.text);
	free(reply);
	return root;
}

static uint64_t member(json_t *obj, const char *path)
{
	char buf[128];
	strcpy(buf, path);
	json_t *v = obj;
	for (char *save = NULL, *key = strtok_r(buf, ".", &save); key;
	     key = strtok_r(NULL, ".", &save)) {
		v = json_object_get(v, key);
		if (!v)
			fail_msg("no member %s", path);
	}
	assert_true(json_is_integer(v));
	assert_true(json_integer_value(v) >= 0);
	return (uint64_t)json_integer_value(v);
}

static bool fetched_at_least(struct fixture *fx, uint64_t n)
{
	uint64_t total, source, fetched;
	stripe_state_counts(fx->state, &total, &source, &fetched);
	return fetched >= n;
}

/* 2 MiB disk of 64-sector stripes, 2000 sectors of image: 32 stripes with a
 * source, the last one 16 sectors long. */
static void test_status_and_stats_follow_the_worker(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.image_sectors = 2000;
	fixture_start(&fx, &o);
	struct rpc_context ctx = {.stripes = fx.state, .worker = fx.worker};

	json_t *r = ask(&ctx, "{\"command\":\"status\"}");
	assert_int_equal(member(r, "status.stripes.total"), 64);
	assert_int_equal(member(r, "status.stripes.source"), 32);
	assert_int_equal(member(r, "status.stripes.fetched"), 0);
	json_decref(r);
	r = ask(&ctx, "{\"command\":\"stats\"}");
	assert_int_equal(member(r, "stats.fetch.stripes_fetched"), 0);
	assert_int_equal(member(r, "stats.fetch.fetch_latency_us_avg"), 0);
	assert_true(json_is_array(json_object_get(json_object_get(r, "stats"), "queues")));
	json_decref(r);

	assert_int_equal(fetch_worker_request_fetch(fx.worker, 31), 0);
	assert_int_equal(fetch_worker_request_fetch(fx.worker, 3), 0);
	wait_until(&fx, stripe_is_fetched, 31);
	wait_until(&fx, stripe_is_fetched, 3);
	r = ask(&ctx, "{\"command\":\"status\"}");
	assert_int_equal(member(r, "status.stripes.fetched"), 2);
	json_decref(r);
	r = ask(&ctx, "{\"command\":\"stats\"}");
	assert_int_equal(member(r, "stats.fetch.stripes_fetched"), 2);
	assert_int_equal(member(r, "stats.fetch.bytes_fetched"), (64 + 16) * SECTOR_SIZE);
	assert_int_equal(member(r, "stats.fetch.fetch_failures"), 0);
	uint64_t avg = member(r, "stats.fetch.fetch_latency_us_avg");
	uint64_t max = member(r, "stats.fetch.fetch_latency_us_max");
	assert_true(avg <= max);
	assert_true(max < 20u * 1000 * 1000);
	json_decref(r);
	fixture_teardown(&fx);
}

/* A stripe that fails twice and then succeeds: two failed attempts. */
static void test_stats_count_failed_attempts(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.image_sectors = 2048;
	o.autofetch = true;
	o.fail_stripe = 5;
	o.fail_times = 2;
	fixture_start(&fx, &o);
	wait_until(&fx, fetched_at_least, 32);
	struct rpc_context ctx = {.stripes = fx.state, .worker = fx.worker};
	json_t *r = ask(&ctx, "{\"command\":\"status\"}");
	assert_int_equal(member(r, "status.stripes.fetched"), 32);
	assert_int_equal(member(r, "status.stripes.source"), 32);
	json_decref(r);
	r = ask(&ctx, "{\"command\":\"stats\"}");
	assert_int_equal(member(r, "stats.fetch.stripes_fetched"), 32);
	assert_int_equal(member(r, "stats.fetch.bytes_fetched"), 2048 * SECTOR_SIZE);
	assert_int_equal(member(r, "stats.fetch.fetch_failures"), 2);
	assert_int_equal(member(r, "stats.fetch.stripes_failed"), 0);
	json_decref(r);
	fixture_teardown(&fx);
}

/* A stripe whose every attempt fails: given up on, counted in
 * stripes_failed (its four attempts in fetch_failures), the others fetched. */
static void test_stats_count_failed_stripes(void **state)
{
	struct fixture fx;
	struct fixture_options o = fixture_defaults();
	o.image_sectors = 2048;
	o.autofetch = true;
	o.fail_stripe = 7;
	o.fail_times = 1000;
	fixture_start(&fx, &o);
	wait_until(&fx, fetched_at_least, 31);
	wait_until(&fx, stripe_is_failed, 7);
	struct rpc_context ctx = {.stripes = fx.state, .worker = fx.worker};
	json_t *r = ask(&ctx, "{\"command\":\"stats\"}");
	assert_int_equal(member(r, "stats.fetch.stripes_fetched"), 31);
	assert_int_equal(member(r, "stats.fetch.stripes_failed"), 1);
	assert_int_equal(member(r, "stats.fetch.fetch_failures"), 4);
	json_decref(r);
	/* The metrics say the same, and the stripe is Failed now. */
	char *text = rpc_metrics_text(&ctx);
	assert_non_null(text);
	const char *lines[] = {
	    "\nubiblk_fetch_stripes_fetched_total 31\n",
	    "\nubiblk_fetch_stripes_failed_total 1\n",
	    "\nubiblk_fetch_failures_total 4\n",
	    "\nubiblk_fetch_bytes_total 1015808\n", /* 31 x 64 sectors */
	    "\nubiblk_fetch_duration_seconds_bucket{le=\"8e-06\"} ",
	    "\nubiblk_fetch_duration_seconds_bucket{le=\"67.108864\"} 31\n",
	    "\nubiblk_fetch_duration_seconds_bucket{le=\"+Inf\"} 31\n",
	    "\nubiblk_fetch_duration_seconds_count 31\n",
	    "\nubiblk_fetch_duration_seconds_sum ",
	    "\nubiblk_stripes{state=\"failed\"} 1\n",
	    "\nubiblk_stripes{state=\"fetched\"} 31\n",
	    "\n# TYPE ubiblk_fetch_duration_seconds histogram\n",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(*lines); i++)
		if (!strstr(text, lines[i]))
			fail_msg("no \"%s\" in the metrics:\n%s", lines[i], text);
	assert_null(strstr(text, "le=\"134.217728\""));
	free(text);
	fixture_teardown(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_status_and_stats_follow_the_worker),
	    cmocka_unit_test(test_stats_count_failed_attempts),
	    cmocka_unit_test(test_stats_count_failed_stripes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

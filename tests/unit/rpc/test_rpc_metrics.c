/* The metrics renderer (docs/metrics.md): the families, labels and bucket
 * bounds of the contract with ubiblk-top, values taken from the trackers
 * and the stripe state, cumulative histograms whose +Inf bucket is the
 * count, families absent without what they describe, label escaping, and
 * the `metrics` command wrapping the very same text in JSON. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc_internal.h"

static const char *const contract_bounds[] = {
    "8e-06",	"1.6e-05",  "3.2e-05",	"6.4e-05",  "0.000128", "0.000256", "0.000512",
    "0.001024", "0.002048", "0.004096", "0.008192", "0.016384", "0.032768", "0.065536",
    "0.131072", "0.262144", "0.524288", "1.048576", "+Inf",
};

static char *render(const struct rpc_context *ctx)
{
	char *text = rpc_metrics_text(ctx);
	assert_non_null(text);
	return text;
}

static bool has_line(const char *text, const char *line)
{
	size_t len = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[len] == '\n')
			return true;
	return false;
}

static void expect_line(const char *text, const char *line)
{
	if (!has_line(text, line))
		fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void expect_no(const char *text, const char *prefix)
{
	const char *found = strstr(text, prefix);
	if (found)
		fail_msg("\"%s\" must be absent, found at: %.80s", prefix, found);
}

/* Every line is a HELP, a TYPE or a sample "name{labels} value" / "name
 * value"; every sample's family was announced by a TYPE line before it. */
static void check_format(const char *text)
{
	assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
	char family[128] = "";
	for (const char *line = text; *line;) {
		const char *end = strchr(line, '\n');
		assert_non_null(end);
		char buf[512];
		size_t len = (size_t)(end - line);
		assert_true(len < sizeof(buf));
		memcpy(buf, line, len);
		buf[len] = '\0';
		if (strncmp(buf, "# HELP ", 7) == 0) {
			/* nothing more to check: the help is free text */
		} else if (strncmp(buf, "# TYPE ", 7) == 0) {
			char type[32];
			assert_int_equal(sscanf(buf + 7, "%127s %31s", family, type), 2);
			assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
				    strcmp(type, "histogram") == 0);
		} else {
			assert_true(family[0] != '\0');
			assert_memory_equal(buf, family, strlen(family));
			char *space = strrchr(buf, ' ');
			assert_non_null(space);
			char *num_end;
			strtod(space + 1, &num_end);
			assert_true(*num_end == '\0' && num_end > space + 1);
		}
		line = end + 1;
	}
}

static void test_without_queues_stripes_or_worker(void **state)
{
	struct rpc_context ctx = {0};
	char *text = render(&ctx);
	check_format(text);
	expect_line(text, "# TYPE ubiblk_queue_ops_total counter");
	expect_line(text, "# TYPE ubiblk_queue_bytes_total counter");
	expect_line(text, "# TYPE ubiblk_queue_in_flight gauge");
	expect_line(text, "# TYPE ubiblk_queue_request_duration_seconds histogram");
	expect_line(text, "# TYPE ubiblk_errors_total counter");
	expect_line(text, "ubiblk_errors_total{kind=\"io\"} 0");
	expect_line(text, "ubiblk_errors_total{kind=\"failed_stripe\"} 0");
	expect_line(text, "ubiblk_errors_total{kind=\"bad_request\"} 0");
	expect_line(text, "ubiblk_build_info{version=\"0.4.0\",xts_engine=\"unknown\"} 1");
	expect_no(text, "ubiblk_stripes");
	expect_no(text, "ubiblk_fetch");
	expect_no(text, "queue=\"");
	free(text);
}

/* The le bounds of one histogram, in order, and its cumulative values. */
static void check_histogram(const char *text, const char *labels, uint64_t count)
{
	char prefix[128];
	snprintf(prefix, sizeof(prefix), "ubiblk_queue_request_duration_seconds_bucket{%s,le=\"",
		 labels);
	const char *p = text;
	uint64_t prev = 0;
	for (size_t k = 0; k < sizeof(contract_bounds) / sizeof(*contract_bounds); k++) {
		p = strstr(p, prefix);
		assert_non_null(p);
		p += strlen(prefix);
		size_t blen = strlen(contract_bounds[k]);
		if (strncmp(p, contract_bounds[k], blen) != 0 || strncmp(p + blen, "\"} ", 3) != 0)
			fail_msg("bucket %zu of {%s}: expected le=\"%s\" at %.40s", k, labels,
				 contract_bounds[k], p);
		uint64_t v = strtoull(p + blen + 3, NULL, 10);
		assert_true(v >= prev);
		prev = v;
	}
	assert_int_equal(prev, count);
	char line[160];
	snprintf(line, sizeof(line), "ubiblk_queue_request_duration_seconds_count{%s} %llu", labels,
		 (unsigned long long)count);
	expect_line(text, line);
	/* No 20th bucket. */
	assert_null(strstr(p, prefix));
}

static void test_queues(void **state)
{
	struct io_tracker *t[2] = {io_tracker_create(8), io_tracker_create(8)};
	assert_non_null(t[0]);
	assert_non_null(t[1]);
	io_tracker_begin(t[0], 0, IO_KIND_READ, 0, 8, 0);
	io_tracker_end(t[0], 0, 0);
	io_tracker_begin(t[0], 0, IO_KIND_READ, 8, 16, 0);
	io_tracker_end(t[0], 0, 0);
	io_tracker_begin(t[0], 1, IO_KIND_WRITE, 0, 2, 0); /* stays in flight */
	io_tracker_begin(t[1], 3, IO_KIND_FLUSH, 0, 0, 0);
	io_tracker_end(t[1], 3, 0);
	io_tracker_count_error(t[0], IO_ERROR_IO);
	io_tracker_count_error(t[1], IO_ERROR_IO);
	io_tracker_count_error(t[1], IO_ERROR_FAILED_STRIPE);
	io_tracker_count_error(t[1], IO_ERROR_BAD_REQUEST);
	struct rpc_context ctx = {.trackers = t, .num_queues = 2, .xts_engine = "openssl"};
	char *text = render(&ctx);
	check_format(text);
	expect_line(text, "ubiblk_queue_ops_total{queue=\"0\",op=\"read\"} 2");
	expect_line(text, "ubiblk_queue_ops_total{queue=\"0\",op=\"write\"} 1");
	expect_line(text, "ubiblk_queue_ops_total{queue=\"0\",op=\"flush\"} 0");
	expect_line(text, "ubiblk_queue_ops_total{queue=\"1\",op=\"flush\"} 1");
	expect_line(text, "ubiblk_queue_bytes_total{queue=\"0\",op=\"read\"} 12288");
	expect_line(text, "ubiblk_queue_bytes_total{queue=\"0\",op=\"write\"} 1024");
	expect_line(text, "ubiblk_queue_bytes_total{queue=\"1\",op=\"read\"} 0");
	expect_no(text, "ubiblk_queue_bytes_total{queue=\"1\",op=\"flush\"}");
	expect_line(text, "ubiblk_queue_in_flight{queue=\"0\"} 1");
	expect_line(text, "ubiblk_queue_in_flight{queue=\"1\"} 0");
	check_histogram(text, "queue=\"0\",op=\"read\"", 2);
	check_histogram(text, "queue=\"0\",op=\"write\"", 0); /* still in flight */
	check_histogram(text, "queue=\"0\",op=\"flush\"", 0);
	check_histogram(text, "queue=\"1\",op=\"flush\"", 1);
	check_histogram(text, "queue=\"1\",op=\"read\"", 0);
	expect_line(text, "ubiblk_queue_request_duration_seconds_sum{queue=\"1\",op=\"read\"} "
			  "0.000000000");
	/* Errors are summed over the queues. */
	expect_line(text, "ubiblk_errors_total{kind=\"io\"} 2");
	expect_line(text, "ubiblk_errors_total{kind=\"failed_stripe\"} 1");
	expect_line(text, "ubiblk_errors_total{kind=\"bad_request\"} 1");
	expect_line(text, "ubiblk_build_info{version=\"0.4.0\",xts_engine=\"openssl\"} 1");
	free(text);
	io_tracker_destroy(t[0]);
	io_tracker_destroy(t[1]);
}

/* A queue without a tracker reads as zeros, like in `stats`. */
static void test_queue_without_tracker(void **state)
{
	struct io_tracker *none[1] = {NULL};
	struct rpc_context ctx = {.trackers = none, .num_queues = 1};
	char *text = render(&ctx);
	check_format(text);
	expect_line(text, "ubiblk_queue_ops_total{queue=\"0\",op=\"read\"} 0");
	expect_line(text, "ubiblk_queue_in_flight{queue=\"0\"} 0");
	check_histogram(text, "queue=\"0\",op=\"write\"", 0);
	free(text);
}

/* 64 stripes, 16 with a source, 2 fetched; one fails, then is fetched. */
static void test_stripes(void **state)
{
	uint8_t headers[64] = {0};
	for (int i = 0; i < 16; i++)
		headers[i * 4] = META_HEADER_HAS_SOURCE;
	headers[0] |= META_HEADER_FETCHED;
	headers[4] |= META_HEADER_FETCHED;
	struct metadata m = {.shift = 6, .header_count = 64, .headers = headers};
	struct stripe_state *stripes;
	assert_int_equal(stripe_state_create(&m, 64u << 6, &stripes, NULL), 0);
	struct rpc_context ctx = {.stripes = stripes};
	char *text = render(&ctx);
	check_format(text);
	expect_line(text, "# TYPE ubiblk_stripes gauge");
	expect_line(text, "ubiblk_stripes{state=\"total\"} 64");
	expect_line(text, "ubiblk_stripes{state=\"source\"} 16");
	expect_line(text, "ubiblk_stripes{state=\"fetched\"} 2");
	expect_line(text, "ubiblk_stripes{state=\"failed\"} 0");
	expect_no(text, "ubiblk_fetch");
	free(text);
	stripe_state_set_failed(stripes, 8);
	stripe_state_set_failed(stripes, 8); /* once */
	text = render(&ctx);
	expect_line(text, "ubiblk_stripes{state=\"failed\"} 1");
	free(text);
	stripe_state_set_fetched(stripes, 8);
	text = render(&ctx);
	expect_line(text, "ubiblk_stripes{state=\"failed\"} 0");
	expect_line(text, "ubiblk_stripes{state=\"fetched\"} 3");
	free(text);
	stripe_state_destroy(stripes);
}

static void test_label_escaping(void **state)
{
	struct rpc_context ctx = {.xts_engine = "a\"b\\c\nd"};
	char *text = render(&ctx);
	expect_line(text, "ubiblk_build_info{version=\"0.4.0\",xts_engine=\"a\\\"b\\\\c\\nd\"} 1");
	free(text);
}

/* {"metrics":"<text>"}: the same text, one JSON line. */
static void test_metrics_command(void **state)
{
	struct io_tracker *t = io_tracker_create(4);
	assert_non_null(t);
	io_tracker_begin(t, 0, IO_KIND_READ, 0, 8, 0);
	io_tracker_end(t, 0, 0);
	struct rpc_context ctx = {.trackers = &t, .num_queues = 1};
	const char *line = "{\"command\":\"metrics\"}";
	char *reply = rpc_reply(&ctx, line, strlen(line));
	assert_non_null(reply);
	assert_null(strchr(reply, '\n'));
	json_error_t err;
	json_t *root = json_loads(reply, 0, &err);
	assert_non_null(root);
	assert_int_equal(json_object_size(root), 1);
	const char *text = json_string_value(json_object_get(root, "metrics"));
	assert_non_null(text);
	char *direct = render(&ctx);
	assert_string_equal(text, direct);
	expect_line(text, "ubiblk_queue_ops_total{queue=\"0\",op=\"read\"} 1");
	free(direct);
	json_decref(root);
	free(reply);
	io_tracker_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_without_queues_stripes_or_worker),
	    cmocka_unit_test(test_queues),
	    cmocka_unit_test(test_queue_without_tracker),
	    cmocka_unit_test(test_stripes),
	    cmocka_unit_test(test_label_escaping),
	    cmocka_unit_test(test_metrics_command),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The RPC commands and their errors, one request line at a time, without a
 * socket: `version`, `status`, `queues` and `stats` replies byte for byte,
 * the error replies, and hostile lines. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "rpc/rpc_internal.h"

static char *reply_to(const struct rpc_context *ctx, const char *line)
{
	char *reply = rpc_reply(ctx, line, strlen(line));
	assert_non_null(reply);
	return reply;
}

static void expect_reply(const struct rpc_context *ctx, const char *line, const char *expected)
{
	char *reply = reply_to(ctx, line);
	assert_string_equal(reply, expected);
	free(reply);
}

/* The reply is {"error":"<prefix>..."}. */
static void expect_error(const struct rpc_context *ctx, const char *line, size_t len,
			 const char *prefix)
{
	char *reply = rpc_reply(ctx, line, len);
	assert_non_null(reply);
	const char *head = "{\"error\":\"";
	if (strncmp(reply, head, strlen(head)) != 0 ||
	    strncmp(reply + strlen(head), prefix, strlen(prefix)) != 0)
		fail_msg("reply %s does not start with error \"%s\"", reply, prefix);
	/* The reply is printable ASCII, whatever the request held. */
	for (const char *p = reply; *p; p++)
		assert_true(*p >= 0x20 && *p <= 0x7e);
	assert_string_equal(reply + strlen(reply) - 2, "\"}");
	free(reply);
}

static const struct rpc_context empty_ctx = {0};

static void test_version(void **state)
{
	expect_reply(&empty_ctx, "{\"command\":\"version\"}", "{\"version\":\"0.4.0\"}");
	/* Other members are ignored; spaces inside the JSON are fine. */
	expect_reply(&empty_ctx, "{ \"id\" : 7, \"command\" : \"version\", \"x\": [1, {}] }",
		     "{\"version\":\"0.4.0\"}");
}

static void test_status_without_stripes(void **state)
{
	expect_reply(&empty_ctx, "{\"command\":\"status\"}", "{\"status\":null}");
}

/* 64 stripes, 16 with a source, stripes 0 and 2 fetched. */
static void test_status_with_stripes(void **state)
{
	uint8_t headers[64] = {0};
	for (int i = 0; i < 16; i++)
		headers[i * 4] = META_HEADER_HAS_SOURCE;
	headers[0] |= META_HEADER_FETCHED;
	headers[4] |= META_HEADER_FETCHED | META_HEADER_WRITTEN;
	headers[1] = META_HEADER_WRITTEN; /* written, no source: not counted */
	struct metadata m = {.shift = 6, .header_count = 64, .headers = headers};
	struct stripe_state *stripes;
	assert_int_equal(stripe_state_create(&m, 64u << 6, &stripes, NULL), 0);
	struct rpc_context ctx = {.stripes = stripes};
	expect_reply(&ctx, "{\"command\":\"status\"}",
		     "{\"status\":{\"stripes\":{\"fetched\":2,\"source\":16,\"total\":64}}}");
	/* The worker marks one more stripe: the next status shows it. */
	stripe_state_set_fetched(stripes, 8);
	expect_reply(&ctx, "{\"command\":\"status\"}",
		     "{\"status\":{\"stripes\":{\"fetched\":3,\"source\":16,\"total\":64}}}");
	stripe_state_destroy(stripes);
}

/* Three queues: {flush@0, read@1 (2,3), write@2 (4,5), flush@3},
 * {write@2 (10,20)}, {}. */
static void test_queues(void **state)
{
	struct io_tracker *t[3] = {io_tracker_create(8), io_tracker_create(8),
				   io_tracker_create(8)};
	io_tracker_begin(t[0], 0, IO_KIND_FLUSH, 0, 0, 0);
	io_tracker_begin(t[0], 1, IO_KIND_READ, 2, 3, 0);
	io_tracker_begin(t[0], 2, IO_KIND_WRITE, 4, 5, 0);
	io_tracker_begin(t[0], 3, IO_KIND_FLUSH, 0, 0, 0);
	io_tracker_begin(t[1], 2, IO_KIND_WRITE, 10, 20, 0);
	struct rpc_context ctx = {.trackers = t, .num_queues = 3};
	expect_reply(&ctx, "{\"command\":\"queues\"}",
		     "{\"queues\":[[[\"flush\"],[\"read\",2,3],[\"write\",4,5],[\"flush\"]],"
		     "[[\"write\",10,20]],[]]}");
	/* Ended requests disappear. */
	io_tracker_end(t[0], 1, 0);
	io_tracker_end(t[1], 2, 0);
	expect_reply(&ctx, "{\"command\":\"queues\"}",
		     "{\"queues\":[[[\"flush\"],[\"write\",4,5],[\"flush\"]],[],[]]}");
	/* A queue without a tracker is an empty list. */
	struct io_tracker *with_gap[2] = {NULL, t[0]};
	struct rpc_context gap = {.trackers = with_gap, .num_queues = 2};
	expect_reply(&gap, "{\"command\":\"queues\"}",
		     "{\"queues\":[[],[[\"flush\"],[\"write\",4,5],[\"flush\"]]]}");
	for (int i = 0; i < 3; i++)
		io_tracker_destroy(t[i]);
}

static void test_queues_without_trackers(void **state)
{
	expect_reply(&empty_ctx, "{\"command\":\"queues\"}", "{\"queues\":[]}");
}

/* Large sector numbers are not truncated. */
static void test_queues_large_values(void **state)
{
	struct io_tracker *t = io_tracker_create(1);
	io_tracker_begin(t, 0, IO_KIND_READ, 0x123456789abull, 65536, 0);
	struct rpc_context ctx = {.trackers = &t, .num_queues = 1};
	expect_reply(&ctx, "{\"command\":\"queues\"}",
		     "{\"queues\":[[[\"read\",1250999896491,65536]]]}");
	io_tracker_destroy(t);
}

static void test_stats(void **state)
{
	struct io_tracker *t[2] = {io_tracker_create(4), io_tracker_create(4)};
	io_tracker_begin(t[0], 0, IO_KIND_READ, 0, 8, 0);
	io_tracker_end(t[0], 0, 0);
	io_tracker_begin(t[0], 0, IO_KIND_WRITE, 0, 2, 0);
	io_tracker_begin(t[0], 9, IO_KIND_WRITE, 0, 1, 0); /* beyond the tracker: counted */
	io_tracker_begin(t[1], 1, IO_KIND_FLUSH, 0, 0, 0);
	struct rpc_context ctx = {.trackers = t, .num_queues = 2};
	expect_reply(&ctx, "{\"command\":\"stats\"}",
		     "{\"stats\":{\"queues\":["
		     "{\"bytes_read\":4096,\"bytes_written\":1536,\"read_ops\":1,\"write_ops\":2,"
		     "\"flush_ops\":0},"
		     "{\"bytes_read\":0,\"bytes_written\":0,\"read_ops\":0,\"write_ops\":0,"
		     "\"flush_ops\":1}],\"fetch\":null}}");
	expect_reply(&empty_ctx, "{\"command\":\"stats\"}",
		     "{\"stats\":{\"queues\":[],\"fetch\":null}}");
	io_tracker_destroy(t[0]);
	io_tracker_destroy(t[1]);
}

static void test_unknown_command(void **state)
{
	expect_reply(&empty_ctx, "{\"command\":\"reboot\"}",
		     "{\"error\":\"unknown command: reboot\"}");
	/* Commands are case-sensitive. */
	expect_reply(&empty_ctx, "{\"command\":\"VERSION\"}",
		     "{\"error\":\"unknown command: VERSION\"}");
	expect_reply(&empty_ctx, "{\"command\":\"\"}", "{\"error\":\"unknown command: \"}");
	/* Non-ASCII commands are echoed as the JSON escape of their text. */
	expect_reply(&empty_ctx, "{\"command\":\"st\\u00e4tus\"}",
		     "{\"error\":\"unknown command: st\\u00E4tus\"}");
}

/* A long unknown command is echoed cut short, at a character boundary. */
static void test_unknown_command_echo_is_bounded(void **state)
{
	char line[600];
	char name[400];
	memset(name, 'x', 127);
	strcpy(name + 127, "\xc3\xa4"); /* a two-byte character across byte 128 */
	memset(name + 129, 'y', 200);
	name[329] = '\0';
	snprintf(line, sizeof(line), "{\"command\":\"%s\"}", name);
	char *reply = reply_to(&empty_ctx, line);
	char expected[300];
	snprintf(expected, sizeof(expected), "{\"error\":\"unknown command: %.127s...\"}", name);
	assert_string_equal(reply, expected);
	free(reply);
}

static void test_invalid_requests(void **state)
{
	const char *lines[] = {
	    "{ not valid json }",				/* not JSON at all */
	    "{\"command\":\"version\"",				/* truncated */
	    "{\"command\":\"version\"} trailing",		/* trailing garbage */
	    "{\"command\":\"version\"}{}",			/* two values */
	    "{\"command\":\"version\",\"command\":\"status\"}", /* duplicate command */
	    "[\"version\"]",					/* not an object */
	    "\"version\"",
	    "42",
	    "null",
	    "{}",		     /* no command */
	    "{\"cmd\":\"version\"}", /* no command */
	    "{\"command\":7}",	     /* not a string */
	    "{\"command\":null}",
	    "{\"command\":[\"version\"]}",
	    "{\"command\":\"ver\\u0000sion\"}", /* NUL inside the string */
	    "version",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		expect_error(&empty_ctx, lines[i], strlen(lines[i]), "invalid request: ");
}

/* Bytes that are not UTF-8, control characters and binary junk get an error
 * reply that is itself valid, printable JSON. */
static void test_garbage(void **state)
{
	const char not_utf8[] = "{\"command\":\"\xff\xfe\"}";
	expect_error(&empty_ctx, not_utf8, strlen(not_utf8), "invalid request: ");
	const char bad_token[] = "\xc3\x28\x01\x02 junk";
	expect_error(&empty_ctx, bad_token, strlen(bad_token), "invalid request: ");
	const char with_nul[] = "{\"command\":\"version\"}\0{}";
	expect_error(&empty_ctx, with_nul, sizeof(with_nul) - 1, "invalid request: ");
	uint8_t junk[256];
	for (int i = 0; i < 256; i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	expect_error(&empty_ctx, (const char *)junk, sizeof(junk), "invalid request: ");
}

/* Deep nesting is refused by the parser, not by the stack. */
static void test_deep_nesting(void **state)
{
	size_t depth = 30000;
	char *line = malloc(2 * depth + 1);
	memset(line, '[', depth);
	memset(line + depth, ']', depth);
	line[2 * depth] = '\0';
	expect_error(&empty_ctx, line, 2 * depth, "invalid request: ");
	free(line);
}

/* The client loop trims each line before answering; blank lines vanish. */
static void test_trim_line(void **state)
{
	size_t len = 9;
	const char *line = rpc_trim_line(" \t{\"a\"}\r\n", &len);
	assert_int_equal(len, 5);
	assert_memory_equal(line, "{\"a\"}", 5);
	len = 4;
	rpc_trim_line(" \v\f\r", &len);
	assert_int_equal(len, 0);
	len = 0;
	rpc_trim_line("", &len);
	assert_int_equal(len, 0);
	/* Only the ends: inner white space stays. */
	len = 5;
	line = rpc_trim_line("a \t b", &len);
	assert_int_equal(len, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_version),
	    cmocka_unit_test(test_status_without_stripes),
	    cmocka_unit_test(test_status_with_stripes),
	    cmocka_unit_test(test_queues),
	    cmocka_unit_test(test_queues_without_trackers),
	    cmocka_unit_test(test_queues_large_values),
	    cmocka_unit_test(test_stats),
	    cmocka_unit_test(test_unknown_command),
	    cmocka_unit_test(test_unknown_command_echo_is_bounded),
	    cmocka_unit_test(test_invalid_requests),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_deep_nesting),
	    cmocka_unit_test(test_trim_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

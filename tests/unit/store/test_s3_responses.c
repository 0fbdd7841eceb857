/* What a GET hands the owner when the S3 server answers oddly: an empty
 * object, a body longer than allowed (declared or not), a body shorter than
 * its Content-Length. One scripted answer per store (tests/unit/store's
 * one-shot listener), one attempt per request. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_capture.h"
#include "store/store.h"

struct got {
	int result;
	uint8_t *body;
	size_t len;
	struct error error;
};

/* One request against a server that answers `response`: a GET with
 * max_bytes, or (put true) a PUT of a few bytes. */
static struct got request_once(const char *response, bool put, size_t max_bytes)
{
	struct http_capture cap;
	assert_int_equal(http_capture_start(&cap, response), 0);
	char endpoint[64];
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%u", (unsigned)cap.port);
	struct archive_source_config cfg = {
	    .store = ARCHIVE_STORE_S3,
	    .bucket = (char *)"bucket",
	    .endpoint = endpoint,
	    .region = (char *)"us-east-1",
	    .has_credentials = true,
	    .access_key_id = (char *)"AKID",
	    .secret_access_key = (char *)"secret",
	    .connections = 1,
	};
	struct store_options opts = {.max_attempts = 1, .attempt_timeout_ms = 5000};
	struct store *s = NULL;
	struct error err = {0};
	assert_int_equal(store_open(&cfg, &opts, &s, &err), 0);
	struct got g = {0};
	if (put)
		g.result =
		    store_put_sync(s, "data/object", (const uint8_t *)"abc", 3, 10000, &g.error);
	else
		g.result =
		    store_get_sync(s, "data/object", max_bytes, 10000, &g.body, &g.len, &g.error);
	store_close(s);
	http_capture_wait(&cap);
	http_capture_free(&cap);
	return g;
}

static struct got get_once(const char *response, size_t max_bytes)
{
	return request_once(response, false, max_bytes);
}

/* The contract: a GET that succeeded hands over a malloc()ed body, also for
 * an object of 0 bytes (a reader may copy from it without a NULL check). */
static void test_empty_object_is_an_empty_body(void **state)
{
	(void)state;
	struct got g = get_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1024);
	assert_int_equal(g.result, 0);
	assert_int_equal(g.len, 0);
	assert_non_null(g.body);
	free(g.body);
}

static void test_body_is_handed_over_whole(void **state)
{
	(void)state;
	struct got g = get_once("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 1024);
	assert_int_equal(g.result, 0);
	assert_int_equal(g.len, 5);
	assert_memory_equal(g.body, "hello", 5);
	free(g.body);
}

/* A huge Content-Length allocates nothing; the body is refused as too large
 * once it passes max_bytes. */
static void test_body_beyond_max_bytes_is_refused(void **state)
{
	(void)state;
	struct got g = get_once("HTTP/1.1 200 OK\r\nContent-Length: 9000000000000000\r\n\r\n"
				"0123456789abcdef0123456789abcdef",
				16);
	assert_int_equal(g.result, -EFBIG);
	assert_null(g.body);
	assert_non_null(strstr(g.error.text, "larger than 16 bytes"));
}

/* A body that ends before its Content-Length is no object. */
static void test_short_body_fails(void **state)
{
	(void)state;
	struct got g = get_once("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", 1024);
	assert_true(g.result < 0);
	assert_null(g.body);
	assert_non_null(strstr(g.error.text, "GetObject data/object (key data/object) failed"));
}

/* Whatever a successful PUT's answer carries (a store or a proxy may send
 * a body) is not an object: the PUT succeeded. */
static void test_put_answer_with_a_body_succeeds(void **state)
{
	(void)state;
	struct got g = request_once("HTTP/1.1 200 OK\r\nContent-Length: 35\r\n\r\n"
				    "<PutObjectResult></PutObjectResult>",
				    true, 0);
	assert_int_equal(g.result, 0);
	assert_null(g.body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_object_is_an_empty_body),
	    cmocka_unit_test(test_body_is_handed_over_whole),
	    cmocka_unit_test(test_body_beyond_max_bytes_is_refused),
	    cmocka_unit_test(test_short_body_fails),
	    cmocka_unit_test(test_put_answer_with_a_body_succeeds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

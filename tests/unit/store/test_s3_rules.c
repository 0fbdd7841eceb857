/* The S3 store's pure rules: endpoint parsing, the addressing table, base
 * and object URLs, key prefixes, S3 XML error bodies, errno mapping, and
 * which failures are retried after how long. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/s3_internal.h"

static void test_bucket_dns_label(void **state)
{
	(void)state;
	const char *yes[] = {"abc", "my-bucket", "0bucket9", "a-b-c",
			     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
	const char *no[] = {"ab",
			    "My-Bucket",
			    "-abc",
			    "abc-",
			    "my.bucket",
			    "my_bucket",
			    "a b c",
			    "",
			    "bück",
			    "ABC",
			    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		assert_true(s3_bucket_is_dns_label(yes[i]));
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		if (s3_bucket_is_dns_label(no[i]))
			fail_msg("%s taken for a DNS label", no[i]);
}

static void test_ip_literals(void **state)
{
	(void)state;
	assert_true(s3_host_is_ip_literal("127.0.0.1"));
	assert_true(s3_host_is_ip_literal("10.1.2.3"));
	assert_true(s3_host_is_ip_literal("[::1]"));
	assert_true(s3_host_is_ip_literal("[2001:db8::5]"));
	assert_false(s3_host_is_ip_literal("localhost"));
	assert_false(s3_host_is_ip_literal("s3.example.com"));
	assert_false(s3_host_is_ip_literal("1.2.3"));
	assert_false(s3_host_is_ip_literal("::1"));
	assert_false(s3_host_is_ip_literal("[::1"));
	assert_false(s3_host_is_ip_literal("[example]"));
}

static void test_endpoint_parse(void **state)
{
	(void)state;
	struct s3_endpoint e;
	struct error err = {0};

	assert_int_equal(s3_endpoint_parse("https://s3.example.com", &e, &err), 0);
	assert_string_equal(e.scheme, "https");
	assert_string_equal(e.host, "s3.example.com");
	assert_string_equal(e.port, "");
	assert_string_equal(e.path, "");
	s3_endpoint_free(&e);
	assert_int_equal(s3_endpoint_parse("HTTP://[::1]:8080/base/", &e, &err), 0);
	assert_string_equal(e.scheme, "http");
	assert_string_equal(e.host, "[::1]");
	assert_string_equal(e.port, ":8080");
	assert_string_equal(e.path, "/base");
	s3_endpoint_free(&e);

	const char *bad[][2] = {
	    {"s3.example.com", "must start with http:// or https://"},
	    {"ftp://x", "must start with http:// or https://"},
	    {"http://", "expected a host name"},
	    {"http://user@host", "expected a host name"},
	    {"http://host:0", "port must be 1..65535"},
	    {"http://host:65536", "port must be 1..65535"},
	    {"http://host:", "port must be 1..65535"},
	    {"http://host/a?b", "no query"},
	    {"http://[zz]", "not an IPv6 address"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(s3_endpoint_parse(bad[i][0], &e, &err), -EINVAL);
		if (!strstr(err.text, bad[i][1]) || !strstr(err.text, "Invalid S3 endpoint"))
			fail_msg("%s: %s", bad[i][0], err.text);
	}
}

/* endpoint, bucket, wanted -> URL every key is appended to (NULL: refused) */
static const struct {
	const char *endpoint, *bucket;
	enum s3_addressing wanted;
	const char *base;
} addressing_table[] = {
    {"https://s3.us-east-1.amazonaws.com", "my-bucket", S3_ADDRESSING_AUTO,
     "https://my-bucket.s3.us-east-1.amazonaws.com/"},
    {"https://s3.example.com:9000/base", "images", S3_ADDRESSING_AUTO,
     "https://images.s3.example.com:9000/base/"},
    {"http://127.0.0.1:8080", "images", S3_ADDRESSING_AUTO, "http://127.0.0.1:8080/images/"},
    {"http://[::1]:8080", "images", S3_ADDRESSING_AUTO, "http://[::1]:8080/images/"},
    {"https://s3.example.com", "my.bucket", S3_ADDRESSING_AUTO,
     "https://s3.example.com/my.bucket/"},
    {"https://s3.example.com", "My_Bucket", S3_ADDRESSING_AUTO,
     "https://s3.example.com/My_Bucket/"},
    {"https://s3.example.com", "ab", S3_ADDRESSING_AUTO, "https://s3.example.com/ab/"},
    {"https://s3.example.com", "images", S3_ADDRESSING_PATH, "https://s3.example.com/images/"},
    {"http://localhost:9000", "images", S3_ADDRESSING_VIRTUAL, "http://images.localhost:9000/"},
    {"http://10.0.0.1", "images", S3_ADDRESSING_VIRTUAL, NULL},
    {"https://s3.example.com", "my.bucket", S3_ADDRESSING_VIRTUAL, NULL},
    {"https://s3.example.com", "a b", S3_ADDRESSING_PATH, "https://s3.example.com/a%20b/"},
};

static void test_addressing_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(addressing_table); i++) {
		struct s3_endpoint e;
		struct error err = {0};
		enum s3_addressing chosen;
		char *base;
		int ret;

		assert_int_equal(s3_endpoint_parse(addressing_table[i].endpoint, &e, &err), 0);
		ret = s3_addressing_choose(addressing_table[i].wanted, &e,
					   addressing_table[i].bucket, &chosen, &err);
		if (!addressing_table[i].base) {
			assert_int_equal(ret, -EINVAL);
			assert_non_null(strstr(err.text, "addressing: virtual needs"));
		} else {
			assert_int_equal(ret, 0);
			assert_int_equal(s3_base_url(&e, addressing_table[i].bucket, chosen, &base),
					 0);
			if (strcmp(base, addressing_table[i].base) != 0)
				fail_msg("%s %s: %s, expected %s", addressing_table[i].endpoint,
					 addressing_table[i].bucket, base,
					 addressing_table[i].base);
			free(base);
		}
		s3_endpoint_free(&e);
	}
}

static void test_key_prefix(void **state)
{
	(void)state;
	const char *cases[][2] = {
	    {"", ""},	       {"/", ""},
	    {"///", ""},       {"a", "a/"},
	    {"/a/b/", "a/b/"}, {"a//b", "a//b/"},
	    {"a/./b", "a/b/"}, {"./a/.", "a/"},
	    {".", ""},	       {"a/../b", "a/../b/"},
	};
	char *out;

	assert_int_equal(s3_key_prefix(NULL, &out), 0);
	assert_string_equal(out, "");
	free(out);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_int_equal(s3_key_prefix(cases[i][0], &out), 0);
		if (strcmp(out, cases[i][1]) != 0)
			fail_msg("prefix \"%s\" gave \"%s\", expected \"%s\"", cases[i][0], out,
				 cases[i][1]);
		free(out);
	}
}

static void test_object_url_encoding(void **state)
{
	(void)state;
	char *url;

	assert_int_equal(s3_object_url("http://h/b/", "p/data/ab-c_d.e~f", &url), 0);
	assert_string_equal(url, "http://h/b/p/data/ab-c_d.e~f");
	free(url);
	assert_int_equal(s3_object_url("http://h/b/", "a b+c%d/é?#", &url), 0);
	assert_string_equal(url, "http://h/b/a%20b%2Bc%25d/%C3%A9%3F%23");
	free(url);
}

static void test_xml_errors(void **state)
{
	(void)state;
	char code[32], message[64];
	const char *body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			   "<Error><Code>NoSuchKey</Code><Message>The specified key does not "
			   "exist.</Message><Key>a/b</Key><RequestId>tx1</RequestId></Error>";

	s3_error_parse(body, strlen(body), code, sizeof(code), message, sizeof(message));
	assert_string_equal(code, "NoSuchKey");
	assert_string_equal(message, "The specified key does not exist.");

	/* Entities, control characters, non-ASCII, truncation. */
	body = "<Error><Message>a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#65;&#x42; &bogus; "
	       "\x01line\nbreak \xc3\xa9</Message><Code>X</Code></Error>";
	s3_error_parse(body, strlen(body), code, sizeof(code), message, sizeof(message));
	assert_string_equal(code, "X");
	assert_string_equal(message, "a <b> & \"c\" 'd' AB &bogus;  line break ??");
	s3_error_parse(body, strlen(body), code, sizeof(code), message, 6);
	assert_string_equal(message, "a <b>");

	/* Not S3's XML, an unterminated element, a body cut mid-way (the
	 * length bounds the search, not a NUL), nothing at all. */
	const char *others[] = {"<html><body>Bad Gateway</body></html>", "<Error><Code>Open",
				"<Error><Code>Cut</Code>", ""};
	for (size_t i = 0; i < ARRAY_SIZE(others); i++) {
		size_t len = strlen(others[i]);
		if (i == 2)
			len -= 3;
		s3_error_parse(others[i], len, code, sizeof(code), message, sizeof(message));
		assert_string_equal(code, "");
		assert_string_equal(message, "");
	}
	s3_error_parse(NULL, 0, code, sizeof(code), message, sizeof(message));
	assert_string_equal(code, "");
	/* Elements outside <Error> are not S3's error. */
	body = "<Code>Nope</Code><Error></Error>";
	s3_error_parse(body, strlen(body), code, sizeof(code), message, sizeof(message));
	assert_string_equal(code, "");
}

static void test_errno_mapping(void **state)
{
	(void)state;
	assert_int_equal(s3_http_errno(404, "NoSuchKey"), -ENOENT);
	assert_int_equal(s3_http_errno(404, ""), -ENOENT);
	assert_int_equal(s3_http_errno(404, "NoSuchBucket"), -ENXIO);
	assert_int_equal(s3_http_errno(403, "AccessDenied"), -EACCES);
	assert_int_equal(s3_http_errno(401, ""), -EACCES);
	assert_int_equal(s3_http_errno(500, "InternalError"), -EIO);
	assert_int_equal(s3_curl_errno(CURLE_OPERATION_TIMEDOUT), -ETIMEDOUT);
	assert_int_equal(s3_curl_errno(CURLE_COULDNT_CONNECT), -ECONNREFUSED);
	assert_int_equal(s3_curl_errno(CURLE_COULDNT_RESOLVE_HOST), -EHOSTUNREACH);
	assert_int_equal(s3_curl_errno(CURLE_RECV_ERROR), -EIO);
}

static void test_retry_decisions(void **state)
{
	(void)state;
	const long retried[] = {429, 500, 502, 503, 504};
	const long final[] = {200, 301, 400, 401, 403, 404, 405, 409, 411, 412, 416, 501, 505};
	const CURLcode transport_retried[] = {CURLE_OPERATION_TIMEDOUT,	  CURLE_COULDNT_CONNECT,
					      CURLE_COULDNT_RESOLVE_HOST, CURLE_SEND_ERROR,
					      CURLE_RECV_ERROR,		  CURLE_GOT_NOTHING,
					      CURLE_PARTIAL_FILE,	  CURLE_SSL_CONNECT_ERROR};
	const CURLcode transport_final[] = {CURLE_WRITE_ERROR, CURLE_OUT_OF_MEMORY,
					    CURLE_URL_MALFORMAT, CURLE_PEER_FAILED_VERIFICATION,
					    CURLE_UNSUPPORTED_PROTOCOL};

	for (size_t i = 0; i < ARRAY_SIZE(retried); i++)
		assert_true(s3_http_is_retryable(retried[i], ""));
	for (size_t i = 0; i < ARRAY_SIZE(final); i++)
		if (s3_http_is_retryable(final[i], ""))
			fail_msg("HTTP %ld retried", final[i]);
	/* Codes that say "later" whatever the status (S3 answers a slow
	 * upload with 400 RequestTimeout). */
	assert_true(s3_http_is_retryable(400, "RequestTimeout"));
	assert_true(s3_http_is_retryable(403, "SlowDown"));
	assert_false(s3_http_is_retryable(403, "AccessDenied"));
	assert_false(s3_http_is_retryable(403, "SignatureDoesNotMatch"));
	assert_false(s3_http_is_retryable(400, NULL));
	for (size_t i = 0; i < ARRAY_SIZE(transport_retried); i++)
		assert_true(s3_curl_is_retryable(transport_retried[i]));
	for (size_t i = 0; i < ARRAY_SIZE(transport_final); i++)
		assert_false(s3_curl_is_retryable(transport_final[i]));
}

static void test_backoff(void **state)
{
	(void)state;
	const uint32_t top = UINT32_MAX;

	/* The ceiling doubles from the base up to the cap ... */
	assert_int_equal(s3_backoff_ms(1, 1000, 20000, top), 999);
	assert_int_equal(s3_backoff_ms(2, 1000, 20000, top), 1999);
	assert_int_equal(s3_backoff_ms(3, 1000, 20000, top), 3999);
	assert_int_equal(s3_backoff_ms(5, 1000, 20000, top), 15999);
	assert_int_equal(s3_backoff_ms(6, 1000, 20000, top), 19999);
	assert_int_equal(s3_backoff_ms(60, 1000, 20000, top), 19999);
	/* ... and the delay is the random fraction of it (full jitter). */
	assert_int_equal(s3_backoff_ms(3, 1000, 20000, 0), 0);
	assert_int_equal(s3_backoff_ms(3, 1000, 20000, 1u << 31), 2000);
	assert_int_equal(s3_backoff_ms(1, 20, 20, 1u << 30), 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bucket_dns_label), cmocka_unit_test(test_ip_literals),
	    cmocka_unit_test(test_endpoint_parse),   cmocka_unit_test(test_addressing_table),
	    cmocka_unit_test(test_key_prefix),	     cmocka_unit_test(test_object_url_encoding),
	    cmocka_unit_test(test_xml_errors),	     cmocka_unit_test(test_errno_mapping),
	    cmocka_unit_test(test_retry_decisions),  cmocka_unit_test(test_backoff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SigV4 as libcurl sends it. The first group replays requests of AWS's
 * published SigV4 test suite (credentials AKIDEXAMPLE, 2015-08-30 12:36:00,
 * us-east-1, service "service") through libcurl with the signer settings
 * the S3 store uses, captures what arrives at a local listener and compares
 * the Authorization header with the suite's expected value. The second
 * group checks what s3_request_setup adds for S3 (x-amz-content-sha256, the
 * session token, the PUT body and method); tests/unit/store/
 * test_s3_botocore.py compares the same requests with botocore's signer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_capture.h"
#include "store/s3_internal.h"

#define SUITE_DATE "20150830T123600Z"
#define SUITE_SCOPE                                                                                \
	"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

static const struct s3_credentials suite_creds = {
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};

struct suite_case {
	const char *name;
	const char *method;
	const char *path_and_query;
	const char *content_type;  /* NULL: none */
	const char *body;	   /* NULL: none */
	const char *session_token; /* NULL: none; else sent as the S3 store sends it */
	const char *authorization;
};

#define SUITE_STS_TOKEN                                                                            \
	"AQoDYXdzEPT//////////"                                                                    \
	"wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YU" \
	"u"                                                                                        \
	"wthAx7mSEI/qkPpKPi/"                                                                      \
	"kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75Y"                  \
	"U9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+"                    \
	"scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

/* Expected values from the suite's <name>.authz files. */
static const struct suite_case suite[] = {
    {"get-vanilla", "GET", "/", NULL, NULL, NULL,
     SUITE_SCOPE "SignedHeaders=host;x-amz-date, "
		 "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    /* The suite sends Param2 before Param1 to check that the signer sorts
     * the query. libcurl 7.88 signs the query in the order given (later
     * versions sort it); S3 object requests carry no query, so the sorted
     * form is what matters here. */
    {"get-vanilla-query-order-key-case", "GET", "/?Param1=value1&Param2=value2", NULL, NULL, NULL,
     SUITE_SCOPE "SignedHeaders=host;x-amz-date, "
		 "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-empty-query-key", "GET", "/?Param1=value1", NULL, NULL, NULL,
     SUITE_SCOPE "SignedHeaders=host;x-amz-date, "
		 "Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
    {"post-vanilla", "POST", "/", NULL, NULL, NULL,
     SUITE_SCOPE "SignedHeaders=host;x-amz-date, "
		 "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-x-www-form-urlencoded", "POST", "/", "application/x-www-form-urlencoded",
     "Param1=value1", NULL,
     SUITE_SCOPE "SignedHeaders=content-type;host;x-amz-date, "
		 "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"post-x-www-form-urlencoded-parameters", "POST", "/",
     "application/x-www-form-urlencoded; charset=utf8", "Param1=value1", NULL,
     SUITE_SCOPE "SignedHeaders=content-type;host;x-amz-date, "
		 "Signature=1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"},
    {"post-sts-header-before", "POST", "/", NULL, NULL, SUITE_STS_TOKEN,
     SUITE_SCOPE "SignedHeaders=host;x-amz-date;x-amz-security-token, "
		 "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"},
};

static int setup_curl(void **state)
{
	(void)state;
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int teardown_curl(void **state)
{
	(void)state;
	curl_global_cleanup();
	return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* Every X-Amz-Date line of the request carries the pinned date: libcurl
 * took ours instead of reading the clock (7.88 repeats the header). */
static void assert_dates_pinned(const char *request)
{
	int seen = 0;

	for (const char *p = strcasestr(request, "\r\nX-Amz-Date:"); p;
	     p = strcasestr(p + 2, "\r\nX-Amz-Date:")) {
		const char *v = p + strlen("\r\nX-Amz-Date:");
		while (*v == ' ')
			v++;
		assert_memory_equal(v, SUITE_DATE "\r\n", strlen(SUITE_DATE) + 2);
		seen++;
	}
	assert_true(seen >= 1);
}

static void run_suite_case(const struct suite_case *c)
{
	struct http_capture cap;
	struct s3_signer signer;
	struct curl_slist *headers = NULL;
	char url[256], line[128];
	CURL *h = curl_easy_init();
	struct s3_credentials creds = suite_creds;
	char *auth;

	assert_non_null(h);
	creds.session_token = (char *)c->session_token;
	assert_int_equal(s3_signer_init(&signer, &creds, "us-east-1", "service"), 0);
	assert_int_equal(http_capture_start(&cap, NULL), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", cap.port, c->path_and_query);
	headers = curl_slist_append(headers, "Host: example.amazonaws.com");
	headers = curl_slist_append(headers, "X-Amz-Date: " SUITE_DATE);
	if (c->content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s", c->content_type);
		headers = curl_slist_append(headers, line);
	}
	if (signer.token_header)
		headers = curl_slist_append(headers, signer.token_header);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, signer.sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, signer.access_key_id);
	curl_easy_setopt(h, CURLOPT_PASSWORD, signer.secret_access_key);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	if (strcmp(c->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body ? c->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(c->body ? strlen(c->body) : 0));
	}
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	http_capture_wait(&cap);

	auth = http_header(cap.request, "Authorization");
	assert_non_null(auth);
	if (strcmp(auth, c->authorization) != 0)
		fail_msg("%s: libcurl sent\n  %s\nthe suite expects\n  %s", c->name, auth,
			 c->authorization);
	assert_true(strncmp(cap.request, c->method, strlen(c->method)) == 0);
	assert_dates_pinned(cap.request);
	free(auth);
	http_capture_free(&cap);
	curl_slist_free_all(headers);
	curl_easy_cleanup(h);
	s3_signer_free(&signer);
}

static void test_aws_suite_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(suite); i++)
		run_suite_case(&suite[i]);
}

/* ---- what s3_request_setup sends ---- */

struct sent {
	char *request;
	char *authorization;
};

static void send_request(enum store_op op, const char *key, const uint8_t *body, size_t len,
			 const struct s3_credentials *creds, struct sent *out)
{
	struct http_capture cap;
	struct s3_signer signer;
	struct curl_slist *headers = NULL;
	char hash[65], base[128], *url;
	CURL *h = curl_easy_init();
	struct s3_request req = {
	    .op = op,
	    .body = body,
	    .body_len = len,
	    .payload_hash = hash,
	    .amz_date = SUITE_DATE,
	    .connect_timeout_ms = 5000,
	    .attempt_timeout_ms = 20000,
	};

	s3_payload_hash(op == STORE_PUT ? body : NULL, op == STORE_PUT ? len : 0, hash);
	assert_int_equal(s3_signer_init(&signer, creds, "us-east-1", "s3"), 0);
	assert_int_equal(http_capture_start(&cap, NULL), 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u/examplebucket/", cap.port);
	assert_int_equal(s3_object_url(base, key, &url), 0);
	req.url = url;
	assert_int_equal(s3_request_setup(h, &signer, &req, &headers), 0);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	http_capture_wait(&cap);
	out->request = cap.request;
	out->authorization = http_header(cap.request, "Authorization");
	assert_non_null(out->authorization);
	curl_slist_free_all(headers);
	curl_easy_cleanup(h);
	free(url);
	s3_signer_free(&signer);
}

static void sent_free(struct sent *s)
{
	free(s->request);
	free(s->authorization);
}

static const struct s3_credentials s3_creds = {
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};

static void test_get_signs_the_empty_payload_hash(void **state)
{
	(void)state;
	struct sent s;
	char *hash;

	send_request(STORE_GET, "ubiblk/data/ab", NULL, 0, &s3_creds, &s);
	assert_true(strncmp(s.request, "GET /examplebucket/ubiblk/data/ab HTTP/1.1\r\n", 44) == 0);
	hash = http_header(s.request, "x-amz-content-sha256");
	assert_string_equal(hash,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_non_null(strstr(s.authorization,
			       "Credential=AKIDEXAMPLE/20150830/us-east-1/s3/"
			       "aws4_request, "
			       "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "));
	/* No secret on the wire. */
	assert_null(strstr(s.request, "wJalrXUtnFEMI"));
	free(hash);
	sent_free(&s);
}

static void test_put_sends_the_body_it_hashed(void **state)
{
	(void)state;
	struct sent s;
	char expected[65], *hash, *type;
	uint8_t body[3000];

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i * 7);
	send_request(STORE_PUT, "metadata.json", body, sizeof(body), &s3_creds, &s);
	assert_true(strncmp(s.request, "PUT /examplebucket/metadata.json HTTP/1.1\r\n", 43) == 0);
	s3_payload_hash(body, sizeof(body), expected);
	hash = http_header(s.request, "x-amz-content-sha256");
	assert_string_equal(hash, expected);
	type = http_header(s.request, "Content-Type");
	assert_string_equal(type, "application/octet-stream");
	assert_memory_equal(strstr(s.request, "\r\n\r\n") + 4, body, sizeof(body));
	assert_non_null(strstr(
	    s.authorization, "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, "));
	free(hash);
	free(type);
	sent_free(&s);
}

static void test_head_and_session_token(void **state)
{
	(void)state;
	struct sent s;
	struct s3_credentials temp = s3_creds;
	char *token;

	temp.session_token = "FQoGZXIvYXdzEXAMPLETOKEN";
	send_request(STORE_HEAD, "data/x", NULL, 0, &temp, &s);
	assert_true(strncmp(s.request, "HEAD /examplebucket/data/x HTTP/1.1\r\n", 37) == 0);
	token = http_header(s.request, "x-amz-security-token");
	assert_string_equal(token, "FQoGZXIvYXdzEXAMPLETOKEN");
	assert_non_null(strstr(s.authorization, "SignedHeaders=host;x-amz-content-sha256;x-amz-"
						"date;x-amz-security-token, "));
	free(token);
	sent_free(&s);
}

static void test_keys_are_sent_encoded_and_as_is(void **state)
{
	(void)state;
	struct sent s;

	send_request(STORE_GET, "a b/./c+d", NULL, 0, &s3_creds, &s);
	assert_true(strncmp(s.request, "GET /examplebucket/a%20b/./c%2Bd HTTP/1.1\r\n", 43) == 0);
	sent_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_aws_suite_vectors),
	    cmocka_unit_test(test_get_signs_the_empty_payload_hash),
	    cmocka_unit_test(test_put_sends_the_body_it_hashed),
	    cmocka_unit_test(test_head_and_session_token),
	    cmocka_unit_test(test_keys_are_sent_encoded_and_as_is),
	};
	return cmocka_run_group_tests(tests, setup_curl, teardown_curl);
}

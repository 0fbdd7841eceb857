/*
 * What the S3 store's code sees of a response, driven the way libcurl
 * drives it: libcurl parses the HTTP framing (status line, header lines),
 * and the store only gets the status code, the Content-Length libcurl
 * parsed, the body in chunks (s3_response_add, behind the write callback)
 * and the transfer's result; a failed attempt becomes a text, an errno and
 * a retry decision (s3_failure_describe: s3_error_parse, s3_http_errno,
 * s3_http_is_retryable, s3_curl_errno, s3_curl_is_retryable). The store
 * has no header callback.
 *
 * Input: 10 bytes of settings, then the body.
 *   byte 0   bits 0-1 op (GET, PUT, HEAD, GET), bits 2-3 chunk size (1, 7,
 *            512, 16384: libcurl's largest), bit 4 libcurl's error buffer
 *            quotes the body's first bytes
 *   1..2     HTTP status, u16 LE (libcurl reports 0 when none came)
 *   3        the transfer's CURLcode, modulo CURL_LAST
 *   4        max_bytes: 0, 1, 16, 100, 4096, 65536, 1 MiB, SIZE_MAX
 *   5..8     Content-Length as libcurl parsed it, i32 LE (-1: none)
 *   9        sizes for a direct s3_error_parse (cut Code and Message)
 *
 * Properties: the body kept is bounded (a GET's object by max_bytes, an
 * error by S3_ERROR_BODY_MAX, nothing for other successes) and is exactly
 * the start of what arrived; a failure's text is one NUL-terminated line of
 * printable ASCII; the errno and retry decision follow the documented
 * statuses; a cut Code or Message is a prefix of the uncut one; a backoff
 * delay stays below its ceiling.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/s3_internal.h"

#define SETTINGS 10u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_printable_line(const char *s, size_t size)
{
	size_t n = strnlen(s, size);
	if (n == size)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			abort();
}

/* An element as s3_error_parse returns it: printable, no trailing blank. */
static void check_element(const char *s, size_t size)
{
	check_printable_line(s, size);
	size_t n = strlen(s);
	if (n && s[n - 1] == ' ')
		abort();
}

static void check_error_parse(const uint8_t *body, size_t len, uint8_t sizes)
{
	char code[64], message[160], short_code[64], short_message[160];
	size_t code_size = 1 + (sizes & 15) * 4, message_size = 1 + (sizes >> 4) * 10;

	s3_error_parse((const char *)body, len, code, sizeof(code), message, sizeof(message));
	s3_error_parse((const char *)body, len, short_code, code_size, short_message, message_size);
	check_element(code, sizeof(code));
	check_element(message, sizeof(message));
	check_element(short_code, code_size);
	check_element(short_message, message_size);
	if (strncmp(code, short_code, strlen(short_code)) != 0 ||
	    strncmp(message, short_message, strlen(short_message)) != 0)
		abort();
}

/* The ceiling is min(cap, base * 2^(attempt-1)); the delay is below it (0
 * when it is 0). */
static void check_backoff(uint32_t attempt, uint32_t base, uint32_t cap, uint32_t random)
{
	uint64_t ceiling = base;
	if (attempt > 1)
		ceiling = attempt - 1 >= 32 ? UINT64_MAX : (uint64_t)base << (attempt - 1);
	if (ceiling > cap)
		ceiling = cap;
	uint32_t d = s3_backoff_ms(attempt, base, cap, random);
	if (ceiling == 0 ? d != 0 : d >= ceiling)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum store_op ops[] = {STORE_GET, STORE_PUT, STORE_HEAD, STORE_GET};
	static const size_t chunks[] = {1, 7, 512, 16384};
	static const size_t limits[] = {0, 1, 16, 100, 4096, 65536, 1u << 20, SIZE_MAX};
	if (size < SETTINGS)
		return 0;
	enum store_op op = ops[data[0] & 3];
	size_t chunk = chunks[(data[0] >> 2) & 3];
	bool quote_body = data[0] & 16;
	long status = (long)(data[1] | data[2] << 8);
	CURLcode res = (CURLcode)(data[3] % CURL_LAST);
	size_t max_bytes = limits[data[4] & 7];
	int64_t announced = (int32_t)((uint32_t)data[5] | (uint32_t)data[6] << 8 |
				      (uint32_t)data[7] << 16 | (uint32_t)data[8] << 24);
	const uint8_t *body = data + SETTINGS;
	size_t len = size - SETTINGS;

	check_error_parse(body, len, data[9]);
	check_backoff(data[3], (uint32_t)status, (uint32_t)announced, (uint32_t)len * 2654435761u);

	/* The write callback, chunk by chunk, until it ends the transfer. */
	struct s3_response r = {0};
	bool ok = status >= 200 && status < 300, ended = false;
	size_t given = 0;
	while (given < len && !ended) {
		size_t n = len - given < chunk ? len - given : chunk;
		if (!s3_response_add(&r, op, status, max_bytes, announced,
				     (const char *)body + given, n))
			ended = true;
		else
			given += n;
	}
	size_t limit = ok ? (op == STORE_GET ? max_bytes : 0) : S3_ERROR_BODY_MAX;
	if (r.len > limit || r.len > r.cap || (r.len && memcmp(r.buf, body, r.len) != 0))
		abort();
	if (ended != r.too_large || (r.too_large && !(ok && op == STORE_GET && len > max_bytes)))
		abort();
	if (!ended && r.len != (len < limit ? len : limit))
		abort();

	if (ended)
		res = CURLE_WRITE_ERROR; /* what libcurl makes of a refused chunk */
	if (!(res == CURLE_OK && ok)) {
		char curl_error[CURL_ERROR_SIZE] = "";
		if (quote_body) {
			size_t n = len < sizeof(curl_error) - 1 ? len : sizeof(curl_error) - 1;
			memcpy(curl_error, body, n);
			curl_error[n] = '\0';
		}
		struct s3_failure f;
		memset(&f, 0xff, sizeof(f));
		s3_failure_describe(res, status, &r, max_bytes, curl_error, "bucket", &f);
		check_printable_line(f.text, sizeof(f.text));
		if (f.errnum >= 0 || f.text[0] == '\0')
			abort();
		if (res == CURLE_OK) {
			if (strncmp(f.text, "HTTP ", 5) != 0 ||
			    ((status == 429 || status == 500 || status == 502 || status == 503 ||
			      status == 504) &&
			     !f.retryable) ||
			    ((status == 401 || status == 403) && f.errnum != -EACCES) ||
			    (status == 404 && f.errnum != -ENOENT && f.errnum != -ENXIO))
				abort();
		} else if (r.too_large && (f.errnum != -EFBIG || f.retryable)) {
			abort();
		}
		/* The request's text, as the store completes it. */
		struct error err;
		error_set(&err, f.errnum, "%s %s (key %s) failed: %s%s", store_op_name(op),
			  "data/object", "prefix/data/object", f.text, " (after 3 attempts)");
		check_printable_line(err.text, sizeof(err.text));
	}
	s3_response_reset(&r);
	return 0;
}

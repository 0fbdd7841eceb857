/* What a failed request tells a person. S3 answers errors with a small XML
 * document, <Error><Code>NoSuchKey</Code><Message>...</Message>...</Error>;
 * only Code and Message are taken (other elements can echo the request,
 * e.g. the string that was signed). The body comes from the network: it is
 * searched within its length, never trusted to be NUL-terminated, and what
 * is copied is made one printable line. */
#include "s3_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *find(const char *hay, const char *end, const char *needle)
{
	size_t n = strlen(needle);

	for (const char *p = hay; p && (size_t)(end - p) >= n; p++) {
		p = memchr(p, needle[0], (size_t)(end - p));
		if (!p || (size_t)(end - p) < n)
			return NULL;
		if (memcmp(p, needle, n) == 0)
			return p;
	}
	return NULL;
}

/* One XML character reference or entity at s (after '&'); its byte in *c
 * and its length (including '&' and ';') as the return, 0 when unknown. */
static size_t entity(const char *s, const char *end, char *c)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {
	    {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
	const char *semi = memchr(s, ';', (size_t)(end - s) < 12 ? (size_t)(end - s) : 12);
	unsigned long v;
	char *num_end;
	char num[12];

	if (!semi)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(named); i++) {
		size_t n = strlen(named[i].name);

		if ((size_t)(semi + 1 - s) == n && memcmp(s, named[i].name, n) == 0) {
			*c = named[i].c;
			return n;
		}
	}
	if (semi - s < 3 || s[1] != '#')
		return 0;
	memcpy(num, s + 2, (size_t)(semi - s - 2));
	num[semi - s - 2] = '\0';
	v = num[0] == 'x' ? strtoul(num + 1, &num_end, 16) : strtoul(num, &num_end, 10);
	if (*num_end != '\0')
		return 0;
	/* Beyond ASCII, one '?' stands for the character. */
	*c = v >= 0x20 && v < 0x7f ? (char)v : '?';
	return (size_t)(semi + 1 - s);
}

/* The text of the first <tag>...</tag> inside <Error>, decoded and made
 * printable, into out (cut to size). */
static void element(const char *body, const char *end, const char *tag, char *out, size_t size)
{
	char open[32], close[32];
	const char *start, *stop;
	size_t n = 0;

	out[0] = '\0';
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	start = find(body, end, open);
	if (!start)
		return;
	start += strlen(open);
	stop = find(start, end, close);
	if (!stop)
		return;
	for (const char *p = start; p < stop && n + 1 < size;) {
		char c = *p;
		size_t len = 1;

		if (c == '&' && (len = entity(p, stop, &c)) == 0) {
			c = '&';
			len = 1;
		}
		p += len;
		if ((unsigned char)c < 0x20 || c == 0x7f)
			c = ' ';
		else if ((unsigned char)c >= 0x80)
			c = '?';
		out[n++] = c;
	}
	/* Trailing blanks say nothing. */
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

void s3_error_parse(const char *body, size_t len, char *code, size_t code_size, char *message,
		    size_t message_size)
{
	const char *end = body ? body + len : NULL;
	const char *error = body ? find(body, end, "<Error>") : NULL;

	code[0] = '\0';
	message[0] = '\0';
	if (!error)
		return;
	element(error, end, "Code", code, code_size);
	element(error, end, "Message", message, message_size);
}

int s3_http_errno(long status, const char *code)
{
	if (status == 404)
		return code && strcmp(code, "NoSuchBucket") == 0 ? -ENXIO : -ENOENT;
	if (status == 401 || status == 403)
		return -EACCES;
	return -EIO;
}

int s3_curl_errno(CURLcode res)
{
	switch (res) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* A byte that cannot be shown on one line of a log or a message becomes
 * '?': libcurl's error buffer may quote what a server sent. */
static void make_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

void s3_failure_describe(CURLcode res, long status, const struct s3_response *r, size_t max_bytes,
			 const char *curl_error, const char *bucket, struct s3_failure *out)
{
	if (res == CURLE_OK) {
		char code[64], message[160];

		s3_error_parse((const char *)r->buf, r->len, code, sizeof(code), message,
			       sizeof(message));
		snprintf(out->text, sizeof(out->text), "HTTP %ld%s%s%s%s", status,
			 code[0] ? " " : "", code, message[0] ? ": " : "", message);
		if (strcmp(code, "NoSuchBucket") == 0) {
			size_t used = strlen(out->text);
			snprintf(out->text + used, sizeof(out->text) - used, " (bucket %s)",
				 bucket);
		}
		out->errnum = s3_http_errno(status, code);
		out->retryable = s3_http_is_retryable(status, code);
	} else if (r->too_large) {
		snprintf(out->text, sizeof(out->text), "the object is larger than %zu bytes",
			 max_bytes);
		out->errnum = -EFBIG;
		out->retryable = false;
	} else {
		snprintf(out->text, sizeof(out->text), "%s",
			 curl_error && curl_error[0] ? curl_error : curl_easy_strerror(res));
		out->errnum = s3_curl_errno(res);
		out->retryable = s3_curl_is_retryable(res);
	}
	make_printable(out->text);
}

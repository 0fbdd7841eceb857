/* The body of one attempt's response, kept as libcurl hands it over. The
 * server decides what arrives, so nothing here grows without a bound: a
 * GET's object up to the caller's max_bytes (beyond that the transfer is
 * ended and the request fails), an error body up to S3_ERROR_BODY_MAX (its
 * start is what s3_error_parse reads; the rest is dropped), and the body of
 * any other success not at all. A Content-Length only sizes the first
 * allocation when it is within those bounds. */
#include "s3_internal.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_CAP (64u * 1024u)

bool s3_response_add(struct s3_response *r, enum store_op op, long status, size_t max_bytes,
		     int64_t announced, const char *data, size_t len)
{
	bool ok = status >= 200 && status < 300;
	size_t limit;

	/* Only a GET's success carries the object; what a store (or a proxy in
	 * front of it) says in a successful PUT's body means nothing to us. */
	if (ok && op != STORE_GET)
		return true;
	limit = ok ? max_bytes : S3_ERROR_BODY_MAX;
	if (r->len + len > limit || r->len + len < r->len) {
		if (ok) {
			r->too_large = true;
			return false;
		}
		len = limit - r->len; /* keep the start of an error body */
	}
	if (r->len + len > r->cap) {
		size_t cap = r->cap ? r->cap : FIRST_CAP;
		uint8_t *bigger;

		if (announced > 0 && (uint64_t)announced <= limit && (size_t)announced > cap)
			cap = (size_t)announced;
		while (cap < r->len + len)
			cap = cap * 2 < limit ? cap * 2 : limit;
		bigger = realloc(r->buf, cap);
		if (!bigger)
			return false;
		r->buf = bigger;
		r->cap = cap;
	}
	if (len)
		memcpy(r->buf + r->len, data, len);
	r->len += len;
	return true;
}

void s3_response_reset(struct s3_response *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

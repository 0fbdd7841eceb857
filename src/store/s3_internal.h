/* The parts of the S3 store (internal to src/store), each in its own file:
 *
 *   s3_profile.c     the AWS shared config files (~/.aws/config, credentials)
 *   s3_credentials.c which keys sign the requests
 *   s3_location.c    region and endpoint
 *   s3_url.c         bucket addressing, key prefix, object URLs
 *   s3_request.c     one signed request on a curl easy handle
 *   s3_response.c    the body of a response, kept within bounds
 *   s3_error.c       S3 XML error bodies and the text of a failed request
 *   s3_retry.c       which failures are retried, and after how long
 *   s3_store.c       the thread driving libcurl's multi interface
 *
 * Everything but s3_store.c is a pure function of its inputs (plus the
 * environment and files named there), so the unit tests check each rule on
 * its own. Strings that hold secrets are wiped before they are freed. */
#ifndef UBIBLK_S3_INTERNAL_H
#define UBIBLK_S3_INTERNAL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "config/config.h"
#include "store/store.h"

/* ---- shared config files ----
 * One profile's keys, merged from the credentials file ([name] sections)
 * and the config file ([profile name], or [default]); where both set a key
 * the credentials file wins. Files come from AWS_SHARED_CREDENTIALS_FILE and
 * AWS_CONFIG_FILE, else ~/.aws/credentials and ~/.aws/config; a missing or
 * unreadable file is an empty one. */
struct s3_profile {
	char *name;	     /* `profile` from the config, else AWS_PROFILE, else "default" */
	bool named;	     /* chosen by the config or AWS_PROFILE, not the fallback */
	bool found;	     /* either file has a section for it */
	bool unsupported;    /* it gets keys some other way (roles, SSO, a process) */
	char *access_key_id; /* aws_access_key_id */
	char *secret_access_key;
	char *session_token;
	char *region;
	char *endpoint_url;
	char *config_path; /* the files that were read, for messages */
	char *credentials_path;
};

/* config_profile: the config's `profile` (NULL when absent). */
int s3_profile_load(const char *config_profile, struct s3_profile *out, struct error *err);
void s3_profile_free(struct s3_profile *p);

/* ---- credentials ----
 * In the order the AWS SDKs use: the config's `credentials` replace
 * everything else; then AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+
 * AWS_SESSION_TOKEN); then the profile. */
struct s3_credentials {
	char *access_key_id;
	char *secret_access_key;
	char *session_token; /* NULL when none */
	char *source;	     /* where they came from, for messages: never the values */
};

int s3_credentials_resolve(const struct archive_source_config *cfg,
			   const struct s3_profile *profile, struct s3_credentials *out,
			   struct error *err);
void s3_credentials_free(struct s3_credentials *c);

/* ---- region and endpoint ----
 * Region: the config's `region`, AWS_REGION, AWS_DEFAULT_REGION, the
 * profile's `region`; none is an error. Endpoint: the config's `endpoint`,
 * then (unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true)
 * AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's `endpoint_url`, and
 * finally https://s3.<region>.amazonaws.com. */
int s3_region_resolve(const struct archive_source_config *cfg, const struct s3_profile *profile,
		      char **region, struct error *err);
int s3_endpoint_resolve(const struct archive_source_config *cfg, const struct s3_profile *profile,
			const char *region, char **endpoint, struct error *err);

/* ---- URLs ---- */
struct s3_endpoint {
	char *scheme; /* "http" or "https" */
	char *host;   /* as written; an IPv6 literal keeps its brackets */
	char *port;   /* ":9000" or "" */
	char *path;   /* "" or "/base" (no trailing slash) */
};

/* http(s)://host[:port][/path]; anything else is refused with a message. */
int s3_endpoint_parse(const char *url, struct s3_endpoint *out, struct error *err);
void s3_endpoint_free(struct s3_endpoint *e);
/* 3..63 of [a-z0-9-], starting and ending with a letter or digit: a name
 * that can be the first label of a host name. */
bool s3_bucket_is_dns_label(const char *bucket);
/* An IPv4 dotted quad or a bracketed IPv6 address. */
bool s3_host_is_ip_literal(const char *host);
/* The addressing a config gets: auto decides by the two rules above;
 * forcing virtual on a bucket or host that cannot carry it is an error. */
int s3_addressing_choose(enum s3_addressing wanted, const struct s3_endpoint *endpoint,
			 const char *bucket, enum s3_addressing *chosen, struct error *err);
/* The URL every object key is appended to, ending in '/'. */
int s3_base_url(const struct s3_endpoint *endpoint, const char *bucket, enum s3_addressing chosen,
		char **url);
/* The prefix as keys carry it: "." components dropped, leading and
 * trailing '/' stripped, then one '/' appended; "" when nothing is left. */
int s3_key_prefix(const char *prefix, char **out);
/* base + key, every byte of key but [A-Za-z0-9-._~/] percent-encoded (the
 * form SigV4 signs for S3). */
int s3_object_url(const char *base, const char *key, char **url);

/* ---- signing and one request ---- */
struct s3_signer {
	char *sigv4;	     /* "aws:amz:<region>:<service>" */
	char *access_key_id; /* copies; wiped on free */
	char *secret_access_key;
	char *token_header; /* "x-amz-security-token: ..." or NULL */
};

int s3_signer_init(struct s3_signer *s, const struct s3_credentials *creds, const char *region,
		   const char *service);
void s3_signer_free(struct s3_signer *s);

/* Lower-case hex SHA-256 of data (65 bytes with the NUL). */
void s3_payload_hash(const uint8_t *data, size_t len, char hex[65]);

struct s3_request {
	enum store_op op;
	const char *url;
	const uint8_t *body; /* PUT: the object (borrowed) */
	size_t body_len;
	const char *payload_hash; /* s3_payload_hash of body (of "" for GET/HEAD) */
	const char *amz_date;	  /* NULL: the clock; tests pin "20150830T123600Z" */
	uint32_t connect_timeout_ms;
	uint32_t attempt_timeout_ms;
};

/* Sets up h (fresh or reset) for one attempt: method, URL, body, SigV4
 * through libcurl with x-amz-content-sha256 (and the session token) added,
 * timeouts. *headers receives the header list, which must outlive the
 * transfer (curl_slist_free_all after it). Response callbacks are the
 * caller's. */
int s3_request_setup(CURL *h, const struct s3_signer *signer, const struct s3_request *req,
		     struct curl_slist **headers);

/* ---- responses ----
 * What libcurl's write callback is given, kept for one attempt. The header
 * lines themselves are libcurl's: only the status and the Content-Length
 * it parsed from them reach this code. */
struct s3_response {
	uint8_t *buf; /* malloc()ed, NULL until the first byte kept */
	size_t len, cap;
	bool too_large; /* a GET's object went beyond max_bytes */
};

/* An error body longer than this is cut: Code and Message come first. */
#define S3_ERROR_BODY_MAX (64u * 1024u)

/* One chunk of the body of a response with HTTP `status` to `op`. A GET's
 * success is kept up to max_bytes (one byte more sets too_large); an
 * error's first S3_ERROR_BODY_MAX bytes are kept and the rest dropped; any
 * other success is dropped. announced is the Content-Length (-1 when
 * unknown), which sizes the first allocation only when within the bound.
 * false: end the transfer (too large, or out of memory). */
bool s3_response_add(struct s3_response *r, enum store_op op, long status, size_t max_bytes,
		     int64_t announced, const char *data, size_t len);
/* Frees the body and zeroes r for the next attempt. */
void s3_response_reset(struct s3_response *r);

/* ---- errors ---- */
/* Code and Message of an S3 XML error body, entities decoded, control
 * characters replaced, cut to a sane length. Missing ones are "". */
void s3_error_parse(const char *body, size_t len, char *code, size_t code_size, char *message,
		    size_t message_size);
/* -ENOENT for 404 (but -ENXIO for NoSuchBucket: the store, not the object,
 * is missing), -EACCES for 401/403, -EIO for other statuses. */
int s3_http_errno(long status, const char *code);
/* -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH or -EIO for a transport failure. */
int s3_curl_errno(CURLcode res);

/* Why one attempt failed. */
struct s3_failure {
	/* One printable line, e.g. "HTTP 403 AccessDenied: Access Denied",
	 * "HTTP 404 NoSuchBucket: ... (bucket b)", "the object is larger than
	 * 16 bytes", or libcurl's text for a transport failure. */
	char text[256];
	int errnum; /* negative errno: s3_http_errno, s3_curl_errno or -EFBIG */
	bool retryable;
};

/* From the attempt's result: res (CURLE_OK when an HTTP answer came, with
 * that status and body r), r->too_large, and curl_error (libcurl's error
 * buffer, "" when it said nothing). bucket names the bucket in the text of
 * NoSuchBucket. */
void s3_failure_describe(CURLcode res, long status, const struct s3_response *r, size_t max_bytes,
			 const char *curl_error, const char *bucket, struct s3_failure *out);

/* ---- retries ---- */
/* Transport failures worth another attempt: timeouts, refused, reset or
 * dropped connections, truncated bodies, unresolved hosts. */
bool s3_curl_is_retryable(CURLcode res);
/* HTTP 429, 500, 502, 503, 504, or an S3 code that means "try later". */
bool s3_http_is_retryable(long status, const char *code);
/* Full jitter: a delay in [0, min(cap, base * 2^(attempt-1))) scaled by
 * random / 2^32; attempt counts from 1 (the attempt that just failed). */
uint32_t s3_backoff_ms(uint32_t attempt, uint32_t base_ms, uint32_t cap_ms, uint32_t random);

#endif

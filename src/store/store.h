/* Object stores: where archives live. A flat namespace of named objects
 * ("metadata.json", "data/<64 hex>") in a local directory or an S3 bucket
 * (under an optional prefix), read and written whole.
 *
 * One interface, asynchronous: the owner starts GET, PUT and HEAD requests
 * and later polls their completions, so a thread that must never block on
 * the network (the fetch worker) only ever waits on completion_fd(). Each
 * store runs its own threads (the filesystem store a few blocking workers,
 * the S3 store one thread driving libcurl's multi interface); at most
 * store_concurrency() requests are in progress, the rest wait in order.
 *
 * Threads: store_open and store_close on any thread; everything else from
 * one thread at a time (the owner). Completions are delivered exactly once
 * per accepted request, in any order; a request that was refused at start
 * (negative return) has none.
 *
 * Durability and atomicity: a PUT that completed with 0 is durable (the
 * filesystem store fsyncs the object and its directory; S3 answered 200),
 * and a reader never sees a torn object (filesystem: written under a
 * temporary name, then renamed).
 *
 * Errors follow the project's convention (0 or a negative errno, and a
 * struct error last). A failed request's text names the operation, the
 * object's name (for S3 its key), and, from S3, the HTTP status, the S3
 * error code and message, e.g. "GetObject data/ab12… (key ubiblk/data/ab12…)
 * failed: HTTP 403 AccessDenied: Access Denied". -ENOENT means the object
 * does not exist (HTTP 404 / no such file). Secrets (S3 keys, session
 * tokens) are never logged nor put into error texts. */
#ifndef UBIBLK_STORE_H
#define UBIBLK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "config/config.h"

/* Object names are checked before any request: 1..1024 bytes of
 * [A-Za-z0-9._-/], no empty, "." or ".." component, no leading "/". A
 * name that fails is refused with -EINVAL (nothing outside the store is
 * ever touched through a name). */
bool store_name_is_valid(const char *name);

struct store;

/* Where a config's store is, for messages: the directory, or
 * "s3://bucket/prefix" (never a secret). */
void store_describe(const struct archive_source_config *cfg, char *buf, size_t len);

enum store_op { STORE_GET, STORE_PUT, STORE_HEAD };

/* "GetObject", "PutObject", "HeadObject". */
const char *store_op_name(enum store_op op);

struct store_completion {
	uint64_t tag; /* what the owner passed when starting the request */
	enum store_op op;
	int result; /* 0, -ENOENT (no such object), or another negative errno */
	/* GET with result 0: the whole object, malloc()ed; the owner frees it
	 * with free(). NULL otherwise. */
	uint8_t *body;
	size_t body_len;
	struct error error; /* why, when result < 0 */
};

/* What a store needs beyond the archive config; zero means the default. */
struct store_options {
	/* S3 only: connect timeout (5000) and per-attempt timeout (20000). */
	uint32_t connect_timeout_ms;
	uint32_t attempt_timeout_ms;
	/* S3 only: attempts per request (3): retried with exponential backoff
	 * and jitter on timeouts, connection errors and HTTP 429, 500, 502,
	 * 503 and 504. */
	uint32_t max_attempts;
	/* S3 only: base backoff (1000 ms, doubling) and its cap (20000 ms). */
	uint32_t backoff_base_ms;
	uint32_t backoff_cap_ms;
};

/* Opens the store the config describes (type filesystem or s3). The
 * filesystem store creates its directory (and data/) when missing. The S3
 * store resolves credentials, region, endpoint and addressing here (see
 * docs/archive.md) and does no network I/O: errors about the bucket or the
 * keys come with the first request. cfg is only read during the call
 * (secrets are copied, and wiped on close). opts may be NULL. */
int store_open(const struct archive_source_config *cfg, const struct store_options *opts,
	       struct store **out, struct error *err);

/* Requests at once (S3 `connections`, filesystem `connections` too). */
uint32_t store_concurrency(const struct store *s);

/* Start a request; 0, or -EINVAL for a bad name, -ENOMEM, -ESHUTDOWN.
 * GET: the object, refused with -EFBIG in its completion when it is larger
 * than max_bytes (a hostile store cannot make us allocate without bound).
 * PUT: data is borrowed and must stay unchanged until the completion has
 * been polled. HEAD: 0 when the object exists, -ENOENT when not. */
int store_get(struct store *s, const char *name, size_t max_bytes, uint64_t tag);
int store_put(struct store *s, const char *name, const uint8_t *data, size_t len, uint64_t tag);
int store_head(struct store *s, const char *name, uint64_t tag);

/* Up to max finished requests into out; returns how many (0 when none). */
int store_poll(struct store *s, struct store_completion *out, int max);
/* An eventfd that is readable while completions wait to be polled (the
 * owner may read it to reset it; poll() does not need that). */
int store_completion_fd(const struct store *s);
/* Requests started and not yet polled. */
size_t store_pending(const struct store *s);

/* Synchronous forms for the small JSON objects: start, then wait on the
 * completion fd up to timeout_ms ("Timeout while getting object <name>" /
 * "Timeout while putting object <name>", -ETIMEDOUT). Only when nothing
 * else is pending (-EBUSY otherwise). A timed-out request is still
 * completed later and dropped by the store (put_sync copies data for
 * that reason). get: *body malloc()ed. */
int store_get_sync(struct store *s, const char *name, size_t max_bytes, uint32_t timeout_ms,
		   uint8_t **body, size_t *len, struct error *err);
int store_put_sync(struct store *s, const char *name, const uint8_t *data, size_t len,
		   uint32_t timeout_ms, struct error *err);

/* Waits for requests in progress to finish (at most their timeouts), drops
 * requests still waiting for their turn without carrying them out (a PUT
 * that never started stores nothing) and completions not polled (freeing
 * their bodies), stops the threads, wipes secrets and frees everything.
 * NULL is fine. */
void store_close(struct store *s);

#endif

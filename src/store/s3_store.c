/* The S3 store: one thread drives libcurl's multi interface with at most
 * `connections` transfers at once, one per slot, each slot owning a curl
 * easy handle that is reused (its connection stays in the multi handle's
 * cache). The thread takes requests from the shared queue (store.c) while a
 * slot is free, sleeps in curl_multi_poll, and is woken by
 * curl_multi_wakeup when a request is queued or the store closes.
 *
 * A failed attempt that may succeed later (see s3_retry.c) keeps its slot
 * and is started again after a jittered exponential backoff, up to
 * max_attempts; then, or for a final failure, the request completes with a
 * text naming the operation, the object, its key, the HTTP status and the
 * S3 error code and message. Closing lets transfers in flight finish (each
 * is bounded by its attempt timeout) and fails requests waiting for a retry
 * at once. */
#include "s3_internal.h"
#include "store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define DEFAULT_ATTEMPT_TIMEOUT_MS 20000u
#define DEFAULT_MAX_ATTEMPTS	   3u
#define DEFAULT_BACKOFF_BASE_MS	   1000u
#define DEFAULT_BACKOFF_CAP_MS	   20000u
/* Longest sleep in curl_multi_poll when nothing is due; a wakeup ends it. */
#define IDLE_POLL_MS 1000

struct s3_slot {
	CURL *easy;
	struct store_request *req; /* NULL: the slot is free */
	char *key;		   /* prefix + name */
	char *url;
	char payload_hash[65];
	struct curl_slist *headers;
	uint32_t attempts;    /* attempts started */
	bool in_multi;	      /* a transfer is running */
	uint64_t retry_at;    /* now_ns() of the next attempt; 0 when not waiting */
	char last_error[256]; /* why the previous attempt failed, for the final text */
	int last_errno;

	/* The response of the current attempt. */
	struct s3_response response;
	char curl_error[CURL_ERROR_SIZE];
};

struct s3_store {
	struct store *store;
	CURLM *multi;
	pthread_t thread;
	struct s3_signer signer;
	char *bucket;
	char *base_url;
	char *key_prefix;
	uint32_t connections;
	struct s3_slot *slots;
	uint32_t busy; /* slots holding a request */
	uint32_t connect_timeout_ms;
	uint32_t attempt_timeout_ms;
	uint32_t max_attempts;
	uint32_t backoff_base_ms;
	uint32_t backoff_cap_ms;
	uint64_t rng;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* xorshift64*: jitter only needs to spread retries, not secrecy. */
static uint32_t next_random(struct s3_store *st)
{
	st->rng ^= st->rng >> 12;
	st->rng ^= st->rng << 25;
	st->rng ^= st->rng >> 27;
	return (uint32_t)((st->rng * 2685821657736338717ull) >> 32);
}

/* ---- one attempt ---- */

/* libcurl's write callback: the body, kept by s3_response_add's rules. */
static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct s3_slot *slot = arg;
	long status = 0;
	curl_off_t announced = -1;

	curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(slot->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
	if (!s3_response_add(&slot->response, slot->req->op, status, slot->req->max_bytes,
			     (int64_t)announced, data, size * n))
		return 0; /* ends the transfer with CURLE_WRITE_ERROR */
	return size * n;
}

static void response_reset(struct s3_slot *slot)
{
	s3_response_reset(&slot->response);
	slot->curl_error[0] = '\0';
}

static int attempt_start(struct s3_store *st, struct s3_slot *slot)
{
	struct s3_request r = {
	    .op = slot->req->op,
	    .url = slot->url,
	    .body = slot->req->data,
	    .body_len = slot->req->len,
	    .payload_hash = slot->payload_hash,
	    .connect_timeout_ms = st->connect_timeout_ms,
	    .attempt_timeout_ms = st->attempt_timeout_ms,
	};
	int ret;

	curl_slist_free_all(slot->headers);
	slot->headers = NULL;
	response_reset(slot);
	curl_easy_reset(slot->easy);
	ret = s3_request_setup(slot->easy, &st->signer, &r, &slot->headers);
	if (ret)
		return ret;
	curl_easy_setopt(slot->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(slot->easy, CURLOPT_WRITEDATA, slot);
	curl_easy_setopt(slot->easy, CURLOPT_ERRORBUFFER, slot->curl_error);
	curl_easy_setopt(slot->easy, CURLOPT_PRIVATE, slot);
	if (curl_multi_add_handle(st->multi, slot->easy) != CURLM_OK)
		return -ENOMEM;
	slot->attempts++;
	slot->in_multi = true;
	slot->retry_at = 0;
	return 0;
}

/* ---- completing a request ---- */

static void slot_release(struct s3_store *st, struct s3_slot *slot)
{
	curl_slist_free_all(slot->headers);
	slot->headers = NULL;
	free(slot->key);
	free(slot->url);
	slot->key = slot->url = NULL;
	response_reset(slot);
	slot->req = NULL;
	slot->attempts = 0;
	slot->retry_at = 0;
	slot->last_error[0] = '\0';
	slot->last_errno = 0;
	st->busy--;
}

static void complete_ok(struct s3_store *st, struct s3_slot *slot)
{
	struct store_request *req = slot->req;

	req->result = 0;
	if (req->op == STORE_GET && slot->response.len) {
		/* The owner frees the body: hand over the buffer. */
		req->body = slot->response.buf;
		req->body_len = slot->response.len;
		slot->response.buf = NULL;
	}
	slot_release(st, slot);
	store_request_complete(st->store, req);
}

static void complete_failed(struct s3_store *st, struct s3_slot *slot)
{
	struct store_request *req = slot->req;
	char tries[32] = "";

	if (slot->attempts > 1)
		snprintf(tries, sizeof(tries), " (after %u attempts)", slot->attempts);
	req->result = slot->last_errno;
	error_set(&req->error, slot->last_errno, "%s %s (key %s) failed: %s%s",
		  store_op_name(req->op), req->name, slot->key, slot->last_error, tries);
	slot_release(st, slot);
	store_request_complete(st->store, req);
}

/* Records why the attempt failed; true when another attempt may help. */
static bool attempt_failed(struct s3_store *st, struct s3_slot *slot, CURLcode res, long status)
{
	struct s3_failure f;

	s3_failure_describe(res, status, &slot->response, slot->req->max_bytes, slot->curl_error,
			    st->bucket, &f);
	snprintf(slot->last_error, sizeof(slot->last_error), "%s", f.text);
	slot->last_errno = f.errnum;
	return f.retryable;
}

static void attempt_done(struct s3_store *st, struct s3_slot *slot, CURLcode res)
{
	long status = 0;
	bool again;

	curl_multi_remove_handle(st->multi, slot->easy);
	slot->in_multi = false;
	curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
	if (res == CURLE_OK && status >= 200 && status < 300) {
		complete_ok(st, slot);
		return;
	}
	again = attempt_failed(st, slot, res, status);
	if (!again || slot->attempts >= st->max_attempts || store_closing(st->store)) {
		complete_failed(st, slot);
		return;
	}
	slot->retry_at = now_ns() + (uint64_t)s3_backoff_ms(slot->attempts, st->backoff_base_ms,
							    st->backoff_cap_ms, next_random(st)) *
					1000000ull;
	log_msg(LOG_DEBUG, "S3: %s %s: %s, attempt %u of %u", store_op_name(slot->req->op),
		slot->req->name, slot->last_error, slot->attempts, st->max_attempts);
}

/* ---- the thread ---- */

/* Fails a request before any attempt (no memory for its URL). */
static void fail_at_start(struct s3_store *st, struct s3_slot *slot, int code)
{
	snprintf(slot->last_error, sizeof(slot->last_error), "%s", strerror(-code));
	slot->last_errno = code;
	if (!slot->key)
		slot->key = strdup("?");
	complete_failed(st, slot);
}

/* Starts queued requests while a slot is free. */
static void take_requests(struct s3_store *st)
{
	for (uint32_t i = 0; i < st->connections && st->busy < st->connections; i++) {
		struct s3_slot *slot = &st->slots[i];
		struct store_request *req;
		int ret;

		if (slot->req)
			continue;
		req = store_request_next(st->store, false);
		if (!req)
			return;
		slot->req = req;
		st->busy++;
		if (asprintf(&slot->key, "%s%s", st->key_prefix, req->name) < 0) {
			slot->key = NULL;
			ret = -ENOMEM;
		} else {
			ret = s3_object_url(st->base_url, slot->key, &slot->url);
		}
		if (!ret) {
			s3_payload_hash(req->op == STORE_PUT ? req->data : NULL,
					req->op == STORE_PUT ? req->len : 0, slot->payload_hash);
			ret = attempt_start(st, slot);
		}
		if (ret)
			fail_at_start(st, slot, ret);
	}
}

/* Restarts the attempts whose backoff is over (all of them, as failures,
 * when closing); returns the milliseconds until the next one is due, or
 * IDLE_POLL_MS. */
static int restart_due(struct s3_store *st)
{
	uint64_t now = now_ns(), next = UINT64_MAX;
	bool closing = store_closing(st->store);

	for (uint32_t i = 0; i < st->connections; i++) {
		struct s3_slot *slot = &st->slots[i];
		int ret;

		if (!slot->req || slot->in_multi)
			continue;
		if (closing) {
			complete_failed(st, slot);
			continue;
		}
		if (slot->retry_at > now) {
			if (slot->retry_at < next)
				next = slot->retry_at;
			continue;
		}
		ret = attempt_start(st, slot);
		if (ret)
			fail_at_start(st, slot, ret);
	}
	if (next == UINT64_MAX)
		return IDLE_POLL_MS;
	return (int)((next - now + 999999) / 1000000 < IDLE_POLL_MS
			 ? (next - now + 999999) / 1000000
			 : IDLE_POLL_MS);
}

/* Handles the finished attempts; returns how many. */
static int collect_done(struct s3_store *st)
{
	CURLMsg *msg;
	int left, done = 0;

	while ((msg = curl_multi_info_read(st->multi, &left))) {
		struct s3_slot *slot = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&slot);
		/* msg points into the multi handle: read it before removing. */
		attempt_done(st, slot, msg->data.result);
		done++;
	}
	return done;
}

static void *s3_main(void *arg)
{
	struct s3_store *st = arg;

	for (;;) {
		int running = 0, wait_ms;
		long curl_ms = -1;

		if (!store_closing(st->store))
			take_requests(st);
		wait_ms = restart_due(st);
		if (store_closing(st->store) && st->busy == 0)
			break;
		curl_multi_perform(st->multi, &running);
		/* A finished attempt freed a slot or set a backoff: look again. */
		if (collect_done(st))
			continue;
		curl_multi_timeout(st->multi, &curl_ms);
		if (curl_ms >= 0 && curl_ms < wait_ms)
			wait_ms = (int)curl_ms;
		curl_multi_poll(st->multi, NULL, 0, wait_ms, NULL);
	}
	return NULL;
}

/* ---- open and close ---- */

static void s3_wake(struct store *s)
{
	struct s3_store *st = store_backend(s);

	curl_multi_wakeup(st->multi);
}

static void s3_free(struct s3_store *st)
{
	for (uint32_t i = 0; st->slots && i < st->connections; i++) {
		struct s3_slot *slot = &st->slots[i];

		if (slot->easy)
			curl_easy_cleanup(slot->easy);
		curl_slist_free_all(slot->headers);
		free(slot->key);
		free(slot->url);
		s3_response_reset(&slot->response);
	}
	free(st->slots);
	if (st->multi)
		curl_multi_cleanup(st->multi);
	s3_signer_free(&st->signer);
	free(st->bucket);
	free(st->base_url);
	free(st->key_prefix);
	free(st);
}

static void s3_stop(struct store *s)
{
	struct s3_store *st = store_backend(s);

	pthread_join(st->thread, NULL);
	s3_free(st);
}

static const struct store_backend_ops s3_ops = {.wake = s3_wake, .stop = s3_stop};

static uint32_t option(uint32_t given, uint32_t fallback)
{
	return given ? given : fallback;
}

/* Everything the config and the environment say, resolved before any
 * request: credentials, region, endpoint, addressing, key prefix. */
static int s3_resolve(struct s3_store *st, const struct archive_source_config *cfg,
		      struct error *err)
{
	struct s3_profile profile;
	struct s3_credentials creds = {0};
	struct s3_endpoint endpoint = {0};
	enum s3_addressing chosen;
	char *region = NULL, *url = NULL;
	int ret = s3_profile_load(cfg->profile, &profile, err);

	if (ret)
		return ret;
	ret = s3_credentials_resolve(cfg, &profile, &creds, err);
	if (!ret)
		ret = s3_region_resolve(cfg, &profile, &region, err);
	if (!ret)
		ret = s3_endpoint_resolve(cfg, &profile, region, &url, err);
	if (!ret)
		ret = s3_endpoint_parse(url, &endpoint, err);
	if (!ret)
		ret = s3_addressing_choose(cfg->addressing, &endpoint, cfg->bucket, &chosen, err);
	if (!ret) {
		ret = s3_base_url(&endpoint, cfg->bucket, chosen, &st->base_url);
		if (!ret)
			ret = s3_key_prefix(cfg->prefix, &st->key_prefix);
		if (!ret)
			ret = s3_signer_init(&st->signer, &creds, region, "s3");
		st->bucket = strdup(cfg->bucket);
		if (!ret && !st->bucket)
			ret = -ENOMEM;
		if (ret)
			error_set(err, ret, "Out of memory for the S3 store");
	}
	if (!ret)
		log_msg(LOG_DEBUG,
			"S3 store: bucket %s at %s (%s addressing), region %s, credentials from %s",
			cfg->bucket, st->base_url,
			chosen == S3_ADDRESSING_VIRTUAL ? "virtual-hosted" : "path-style", region,
			creds.source);
	s3_endpoint_free(&endpoint);
	free(url);
	free(region);
	s3_credentials_free(&creds);
	s3_profile_free(&profile);
	return ret;
}

static int s3_setup_curl(struct s3_store *st, struct error *err)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK)
		return error_set(err, -EIO, "libcurl initialisation failed: %s",
				 curl_easy_strerror(curl_init_result));
	st->multi = curl_multi_init();
	st->slots = calloc(st->connections, sizeof(*st->slots));
	if (!st->multi || !st->slots)
		return error_set(err, -ENOMEM, "Out of memory for the S3 store");
	/* One connection per slot, kept for the next request. */
	curl_multi_setopt(st->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)st->connections);
	curl_multi_setopt(st->multi, CURLMOPT_MAXCONNECTS, (long)st->connections);
	for (uint32_t i = 0; i < st->connections; i++) {
		st->slots[i].easy = curl_easy_init();
		if (!st->slots[i].easy)
			return error_set(err, -ENOMEM, "Out of memory for the S3 store");
	}
	return 0;
}

int store_s3_open(const struct archive_source_config *cfg, const struct store_options *opts,
		  struct store **out, struct error *err)
{
	const struct store_options none = {0};
	struct s3_store *st = calloc(1, sizeof(*st));
	int ret;

	*out = NULL;
	if (!opts)
		opts = &none;
	if (!st)
		return error_set(err, -ENOMEM, "Out of memory for the S3 store");
	st->connections = cfg->connections ? cfg->connections : 1;
	st->connect_timeout_ms = option(opts->connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS);
	st->attempt_timeout_ms = option(opts->attempt_timeout_ms, DEFAULT_ATTEMPT_TIMEOUT_MS);
	st->max_attempts =
	    option(opts->max_attempts, option(cfg->max_attempts, DEFAULT_MAX_ATTEMPTS));
	st->backoff_base_ms = option(opts->backoff_base_ms, DEFAULT_BACKOFF_BASE_MS);
	st->backoff_cap_ms = option(opts->backoff_cap_ms, DEFAULT_BACKOFF_CAP_MS);
	if (getrandom(&st->rng, sizeof(st->rng), 0) != sizeof(st->rng) || st->rng == 0)
		st->rng = now_ns() | 1;

	ret = s3_resolve(st, cfg, err);
	if (!ret)
		ret = s3_setup_curl(st, err);
	if (!ret)
		ret = store_alloc(&s3_ops, st->connections, &st->store, err);
	if (ret) {
		s3_free(st);
		return ret;
	}
	store_set_backend(st->store, st);
	ret = thread_start(&st->thread, "s3", s3_main, st);
	if (ret) {
		store_free(st->store);
		s3_free(st);
		return error_set(err, ret, "Failed to start the S3 thread: %s", strerror(-ret));
	}
	*out = st->store;
	return 0;
}

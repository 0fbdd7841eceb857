/* What a store backend (filesystem, S3, a test's fake) plugs into: the
 * request queue and completion list every store shares (store.c).
 *
 * The owner's calls (store_get/put/head, store_poll, the sync forms) live in
 * store.c and never reach the backend directly: a started request is queued
 * in order; the backend's own threads take requests from the queue with
 * store_request_next(), carry them out, fill in result/body/error and hand
 * each one back exactly once with store_request_complete(). store.c turns
 * that into the completion list and the eventfd.
 *
 * A backend's open function calls store_alloc() with its ops, sets its
 * state with store_set_backend(), starts its threads and returns the store;
 * if it fails before any thread started it calls store_free().
 *
 * Closing: store_close() marks the store closing, cancels the requests still
 * queued (nobody will poll them), calls ops->wake so a backend thread that
 * sleeps elsewhere than in store_request_next notices, then ops->stop, which
 * must finish (or fail) every request the backend took, complete them, join
 * its threads and free its state. */
#ifndef UBIBLK_STORE_INTERNAL_H
#define UBIBLK_STORE_INTERNAL_H

#include "store/store.h"

struct store_request {
	/* Set when the request starts; read-only for the backend. */
	enum store_op op;
	uint64_t tag;
	char *name;	     /* a valid object name (store_name_is_valid) */
	size_t max_bytes;    /* GET */
	const uint8_t *data; /* PUT: the bytes to store */
	size_t len;

	/* Filled in by the backend before store_request_complete(). result 0:
	 * body (GET only, malloc()ed, may be NULL when body_len is 0). */
	int result;
	uint8_t *body;
	size_t body_len;
	struct error error;

	/* The backend's own per-request state (S3: its transfer). */
	void *backend_data;

	/* store.c's bookkeeping. */
	struct store_request *next;
	uint8_t *owned_data; /* the copy store_put_sync made */
	bool completed;	     /* in the completion list */
	bool dropped;	     /* its sync caller gave up: free on completion */
};

struct store_backend_ops {
	/* Wakes the backend's threads: a request was queued, or the store is
	 * closing. NULL when they only ever wait in store_request_next(), which
	 * wakes by itself. Called on the owner's thread, without store locks. */
	void (*wake)(struct store *s);
	/* Finishes (or fails) the requests the backend took, completing each,
	 * joins the backend's threads and frees its state. Called once, by
	 * store_close(), after the store is marked closing. */
	void (*stop)(struct store *s);
};

/* A store with an empty queue, its eventfd, and no backend state yet.
 * concurrency is what store_concurrency() reports (at least 1). */
int store_alloc(const struct store_backend_ops *ops, uint32_t concurrency, struct store **out,
		struct error *err);
/* Frees a store whose backend has no threads (a failed open). */
void store_free(struct store *s);
void store_set_backend(struct store *s, void *backend);
void *store_backend(const struct store *s);

/* The oldest queued request, taken out of the queue (the backend now owns it
 * until it completes it). wait: block until one is queued or the store is
 * closing. NULL when the store is closing (queued requests were cancelled),
 * or, without wait, when the queue is empty. Any backend thread. */
struct store_request *store_request_next(struct store *s, bool wait);
/* True once store_close() began: a backend thread finishes what it holds
 * and exits. */
bool store_closing(struct store *s);
/* Hands a request back, exactly once, from any backend thread. */
void store_request_complete(struct store *s, struct store_request *req);
/* Sets req->result = code and req->error to "<Op> <name> failed: <why>",
 * returning code. */
int store_request_fail(struct store_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The backends' open functions (store_open chooses by type). */
int store_fs_open(const struct archive_source_config *cfg, const struct store_options *opts,
		  struct store **out, struct error *err);
int store_s3_open(const struct archive_source_config *cfg, const struct store_options *opts,
		  struct store **out, struct error *err);

#endif

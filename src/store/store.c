/* What every store shares: object names, the queue of started requests the
 * backend's threads take from, the completion list behind the eventfd, the
 * synchronous forms and closing. See store.h for the contract and
 * store_internal.h for how a backend plugs in. */
#include "store/store_internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define STORE_NAME_MAX 1024

struct store {
	const struct store_backend_ops *ops;
	void *backend;
	uint32_t concurrency;
	/* Readable (non-zero) exactly while the completion list is not empty:
	 * both are changed together under lock. */
	int efd;

	pthread_mutex_t lock;
	pthread_cond_t queued; /* a request was queued, or closing */
	struct store_request *queue_head, **queue_tail;
	struct store_request *done_head, **done_tail;
	bool closing;

	size_t pending; /* the owner's: started and not yet polled */
};

bool store_name_is_valid(const char *name)
{
	if (!name)
		return false;
	size_t n = strnlen(name, STORE_NAME_MAX + 1);
	if (n == 0 || n > STORE_NAME_MAX)
		return false;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		char c = name[i];
		if (i == n || c == '/') {
			size_t len = i - start;
			/* Empty components also catch a leading or trailing '/'. */
			if (len == 0 || (len == 1 && name[start] == '.') ||
			    (len == 2 && name[start] == '.' && name[start + 1] == '.'))
				return false;
			start = i + 1;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

const char *store_op_name(enum store_op op)
{
	switch (op) {
	case STORE_GET:
		return "GetObject";
	case STORE_PUT:
		return "PutObject";
	case STORE_HEAD:
		return "HeadObject";
	}
	return "?";
}

int store_alloc(const struct store_backend_ops *ops, uint32_t concurrency, struct store **out,
		struct error *err)
{
	*out = NULL;
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(err, -ENOMEM, "out of memory");
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		int rc = -errno;
		free(s);
		return error_set(err, rc, "failed to create the store's eventfd: %s",
				 strerror(-rc));
	}
	s->ops = ops;
	s->concurrency = concurrency ? concurrency : 1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->queued, NULL);
	s->queue_tail = &s->queue_head;
	s->done_tail = &s->done_head;
	*out = s;
	return 0;
}

void store_set_backend(struct store *s, void *backend)
{
	s->backend = backend;
}

void *store_backend(const struct store *s)
{
	return s->backend;
}

static void request_free(struct store_request *req)
{
	free(req->name);
	free(req->owned_data);
	free(req->body);
	free(req);
}

static void request_list_free(struct store_request *req)
{
	while (req) {
		struct store_request *next = req->next;
		request_free(req);
		req = next;
	}
}

void store_free(struct store *s)
{
	if (!s)
		return;
	request_list_free(s->queue_head);
	request_list_free(s->done_head);
	close(s->efd);
	pthread_cond_destroy(&s->queued);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int store_open(const struct archive_source_config *cfg, const struct store_options *opts,
	       struct store **out, struct error *err)
{
	*out = NULL;
	switch (cfg->store) {
	case ARCHIVE_STORE_FILESYSTEM:
		return store_fs_open(cfg, opts, out, err);
	case ARCHIVE_STORE_S3:
		return store_s3_open(cfg, opts, out, err);
	}
	return error_set(err, -EINVAL, "unknown object store type %d", (int)cfg->store);
}

uint32_t store_concurrency(const struct store *s)
{
	return s->concurrency;
}

int store_completion_fd(const struct store *s)
{
	return s->efd;
}

size_t store_pending(const struct store *s)
{
	return s->pending;
}

/* ---- the backend's side ---- */

struct store_request *store_request_next(struct store *s, bool wait)
{
	pthread_mutex_lock(&s->lock);
	while (!s->queue_head && !s->closing && wait)
		pthread_cond_wait(&s->queued, &s->lock);
	struct store_request *req = NULL;
	if (!s->closing && s->queue_head) {
		req = s->queue_head;
		s->queue_head = req->next;
		if (!s->queue_head)
			s->queue_tail = &s->queue_head;
		req->next = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	return req;
}

bool store_closing(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	bool closing = s->closing;
	pthread_mutex_unlock(&s->lock);
	return closing;
}

void store_request_complete(struct store *s, struct store_request *req)
{
	/* The owner gets a buffer for every object, an empty one included. */
	if (req->result == 0 && req->op == STORE_GET && !req->body) {
		req->body_len = 0;
		req->body = malloc(1);
		if (!req->body)
			store_request_fail(req, -ENOMEM, "out of memory");
	}
	if (req->result != 0) {
		free(req->body);
		req->body = NULL;
		req->body_len = 0;
		error_default(&req->error, req->result);
	}
	pthread_mutex_lock(&s->lock);
	if (req->dropped) {
		pthread_mutex_unlock(&s->lock);
		request_free(req);
		return;
	}
	req->completed = true;
	req->next = NULL;
	*s->done_tail = req;
	s->done_tail = &req->next;
	uint64_t one = 1;
	/* Cannot fail short of the counter overflowing 2^64 - 2. */
	ssize_t n = write(s->efd, &one, sizeof(one));
	(void)n;
	pthread_mutex_unlock(&s->lock);
}

int store_request_fail(struct store_request *req, int code, const char *fmt, ...)
{
	char why[ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	req->result = code;
	return error_set(&req->error, code, "%s %s failed: %s", store_op_name(req->op), req->name,
			 why);
}

/* ---- the owner's side ---- */

static int store_start(struct store *s, enum store_op op, const char *name, size_t max_bytes,
		       const uint8_t *data, size_t len, uint8_t *owned_data, uint64_t tag,
		       struct store_request **started)
{
	if (!store_name_is_valid(name))
		return -EINVAL;
	if (op == STORE_PUT && !data && len)
		return -EINVAL;
	struct store_request *req = calloc(1, sizeof(*req));
	char *copy = strdup(name);
	if (!req || !copy) {
		free(req);
		free(copy);
		return -ENOMEM;
	}
	req->op = op;
	req->tag = tag;
	req->name = copy;
	req->max_bytes = max_bytes;
	req->data = data;
	req->len = len;
	req->owned_data = owned_data;

	pthread_mutex_lock(&s->lock);
	if (s->closing) {
		pthread_mutex_unlock(&s->lock);
		req->owned_data = NULL; /* still the caller's on refusal */
		request_free(req);
		return -ESHUTDOWN;
	}
	*s->queue_tail = req;
	s->queue_tail = &req->next;
	pthread_cond_signal(&s->queued);
	pthread_mutex_unlock(&s->lock);
	s->pending++;
	if (s->ops->wake)
		s->ops->wake(s);
	if (started)
		*started = req;
	return 0;
}

int store_get(struct store *s, const char *name, size_t max_bytes, uint64_t tag)
{
	return store_start(s, STORE_GET, name, max_bytes, NULL, 0, NULL, tag, NULL);
}

int store_put(struct store *s, const char *name, const uint8_t *data, size_t len, uint64_t tag)
{
	return store_start(s, STORE_PUT, name, 0, data, len, NULL, tag, NULL);
}

int store_head(struct store *s, const char *name, uint64_t tag)
{
	return store_start(s, STORE_HEAD, name, 0, NULL, 0, NULL, tag, NULL);
}

int store_poll(struct store *s, struct store_completion *out, int max)
{
	if (max <= 0)
		return 0;
	pthread_mutex_lock(&s->lock);
	struct store_request *list = s->done_head;
	struct store_request *last = NULL, *req = list;
	int n = 0;
	while (req && n < max) {
		last = req;
		req = req->next;
		n++;
	}
	if (n) {
		s->done_head = req;
		last->next = NULL;
		if (!s->done_head) {
			s->done_tail = &s->done_head;
			uint64_t count;
			ssize_t r = read(s->efd, &count, sizeof(count)); /* reset: nothing waits */
			(void)r;
		}
	}
	pthread_mutex_unlock(&s->lock);

	for (int i = 0; i < n; i++) {
		struct store_request *next = list->next;
		struct store_completion *c = &out[i];
		c->tag = list->tag;
		c->op = list->op;
		c->result = list->result;
		c->body = list->body;
		c->body_len = list->body_len;
		c->error = list->error;
		list->body = NULL;
		request_free(list);
		list = next;
	}
	s->pending -= (size_t)n;
	return n;
}

/* Waits for the only pending request, req, up to timeout_ms. On timeout the
 * request is left to the backend, which frees it when it completes. */
static int sync_wait(struct store *s, struct store_request *req, const char *name,
		     uint32_t timeout_ms, const char *verb, struct store_completion *c,
		     struct error *err)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		if (store_poll(s, c, 1) == 1)
			return 0;
		uint64_t now = now_ns();
		if (now >= deadline)
			break;
		uint64_t ms = (deadline - now + 999999u) / 1000000u;
		struct pollfd p = {.fd = s->efd, .events = POLLIN};
		poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
	}
	pthread_mutex_lock(&s->lock);
	bool completed = req->completed;
	if (!completed)
		req->dropped = true;
	pthread_mutex_unlock(&s->lock);
	if (completed && store_poll(s, c, 1) == 1)
		return 0;
	s->pending--;
	return error_set(err, -ETIMEDOUT, "Timeout while %s object %s", verb, name);
}

static int sync_check(struct store *s, const char *name, struct error *err)
{
	if (s->pending)
		return error_set(err, -EBUSY, "object %s: other requests are pending", name);
	if (!store_name_is_valid(name))
		return error_set(err, -EINVAL, "invalid object name \"%s\"", name ? name : "");
	return 0;
}

int store_get_sync(struct store *s, const char *name, size_t max_bytes, uint32_t timeout_ms,
		   uint8_t **body, size_t *len, struct error *err)
{
	*body = NULL;
	*len = 0;
	int rc = sync_check(s, name, err);
	if (rc)
		return rc;
	struct store_request *req;
	rc = store_start(s, STORE_GET, name, max_bytes, NULL, 0, NULL, 0, &req);
	if (rc)
		return error_set(err, rc, "GetObject %s failed: %s", name, strerror(-rc));
	struct store_completion c;
	rc = sync_wait(s, req, name, timeout_ms, "getting", &c, err);
	if (rc)
		return rc;
	if (c.result) {
		if (err)
			*err = c.error;
		return c.result;
	}
	*body = c.body;
	*len = c.body_len;
	return 0;
}

int store_put_sync(struct store *s, const char *name, const uint8_t *data, size_t len,
		   uint32_t timeout_ms, struct error *err)
{
	int rc = sync_check(s, name, err);
	if (rc)
		return rc;
	/* A timed-out PUT still runs after we return: it must not read the
	 * caller's buffer then. */
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return error_set(err, -ENOMEM, "PutObject %s failed: out of memory", name);
	if (len)
		memcpy(copy, data, len);
	struct store_request *req;
	rc = store_start(s, STORE_PUT, name, 0, copy, len, copy, 0, &req);
	if (rc) {
		free(copy);
		return error_set(err, rc, "PutObject %s failed: %s", name, strerror(-rc));
	}
	struct store_completion c;
	rc = sync_wait(s, req, name, timeout_ms, "putting", &c, err);
	if (rc)
		return rc;
	if (c.result && err)
		*err = c.error;
	return c.result;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->closing = true;
	struct store_request *cancelled = s->queue_head;
	s->queue_head = NULL;
	s->queue_tail = &s->queue_head;
	pthread_cond_broadcast(&s->queued);
	pthread_mutex_unlock(&s->lock);
	/* Never taken by the backend, never to be polled. */
	request_list_free(cancelled);
	if (s->ops->wake)
		s->ops->wake(s);
	if (s->ops->stop)
		s->ops->stop(s);
	store_free(s);
}

void store_describe(const struct archive_source_config *cfg, char *buf, size_t len)
{
	if (cfg->store == ARCHIVE_STORE_S3)
		snprintf(buf, len, "s3://%s/%s", cfg->bucket, cfg->prefix ? cfg->prefix : "");
	else
		snprintf(buf, len, "%s", cfg->path);
}

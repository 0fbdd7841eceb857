/* Reading stripes from an archive: GETs started on request (one per object
 * in flight, shared by the stripes that use it), objects checked and decoded
 * into the stripe buffers when their GET completes, objects that further
 * stripes name kept for them (object_cache.h), completions handed out in
 * the order they became ready. */
#include "archive_source/archive_source_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORE_POLL_BATCH 16

static struct archive_source *to_archive(struct stripe_source *src)
{
	return (struct archive_source *)src;
}

static const struct archive_source *to_archive_const(const struct stripe_source *src)
{
	return (const struct archive_source *)src;
}

/* Makes the store's eventfd readable: a completion is waiting that no store
 * request will announce. An eventfd is a counter, so this only ever adds a
 * wake-up; the owner polls and finds it. */
static void wake_owner(struct archive_source *s)
{
	uint64_t one = 1;
	ssize_t n = write(store_completion_fd(s->store), &one, sizeof(one));
	(void)n; /* a saturated counter is still readable */
}

static void push_ready(struct archive_source *s, struct stripe_wait *w, int result)
{
	w->result = result;
	w->next = NULL;
	if (s->ready_tail)
		s->ready_tail->next = w;
	else
		s->ready_head = w;
	s->ready_tail = w;
	if (result < 0)
		s->stats.failed++;
}

static struct object_get *find_get(struct archive_source *s, const uint8_t *hash)
{
	for (struct object_get *g = s->gets; g; g = g->next)
		if (g->waiters && memcmp(g->hash, hash, ARCHIVE_HASH_BYTES) == 0)
			return g;
	return NULL;
}

static void unlink_get(struct archive_source *s, struct object_get *g)
{
	if (g->prev)
		g->prev->next = g->next;
	else
		s->gets = g->next;
	if (g->next)
		g->next->prev = g->prev;
}

static int decode_one(struct archive_source *s, const uint8_t *hash, struct stripe_wait *w,
		      uint8_t *obj, size_t len, bool may_clobber)
{
	struct error err = {0};
	uint8_t *copy = obj;
	/* Decrypting works in place: a stripe decodes a copy unless it is the
	 * last to use these bytes (the last waiter of a GET; never a kept
	 * object's stripe). */
	if (s->codec.xts && !may_clobber) {
		copy = malloc(len ? len : 1);
		if (!copy) {
			log_warn("archive source: stripe %llu failed: out of memory",
				 (unsigned long long)w->stripe);
			return -ENOMEM;
		}
		memcpy(copy, obj, len);
	}
	int rc = archive_object_decode(&s->codec, w->stripe, hash, copy, len, w->buf,
				       (size_t)s->base.stripe_sectors * SECTOR_SIZE, &err);
	if (copy != obj)
		free(copy);
	if (rc < 0)
		log_warn("archive source: stripe %llu failed: %s", (unsigned long long)w->stripe,
			 err.text);
	return rc;
}

/* A stripe whose object is kept: decoded now, handed out by the next poll
 * (the fd says so: no store completion will). */
static void serve_kept(struct archive_source *s, struct stripe_wait *w, struct shared_object *sh)
{
	struct cached_object *o = sh->cached;
	int rc = decode_one(s, sh->hash, w, o->bytes, o->len, false);
	s->stats.cache_hits++;
	object_cache_used(&s->cache, sh);
	push_ready(s, w, rc);
	wake_owner(s);
}

static int archive_request(struct stripe_source *src, uint64_t stripe, void *buf)
{
	struct archive_source *s = to_archive(src);
	struct stripe_wait *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->stripe = stripe;
	w->buf = buf;
	const struct archive_stripe_hash *entry = archive_stripe_map_find(&s->map, stripe);
	if (!entry) {
		memset(buf, 0, (size_t)src->stripe_sectors * SECTOR_SIZE);
		s->stats.zero_stripes++;
		push_ready(s, w, 0);
		wake_owner(s);
		return 0;
	}
	struct shared_object *sh = object_cache_shared(&s->cache, entry->hash);
	/* A retried stripe counts again: at worst the object is dropped early
	 * and the last stripe naming it fetches it. */
	bool counted = sh && sh->unrequested;
	if (counted)
		sh->unrequested--;
	if (sh && sh->cached) {
		serve_kept(s, w, sh);
		return 0;
	}
	struct object_get *g = find_get(s, entry->hash);
	if (g) {
		w->next = g->waiters;
		g->waiters = w;
		s->stats.coalesced++;
		return 0;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		free(w);
		return -ENOMEM;
	}
	memcpy(g->hash, entry->hash, ARCHIVE_HASH_BYTES);
	char name[ARCHIVE_OBJECT_NAME_SIZE];
	archive_object_name(entry->hash, name);
	int rc = store_get(s->store, name, s->object_max, (uint64_t)(uintptr_t)g);
	if (rc < 0) {
		if (counted)
			sh->unrequested++; /* not accepted: asked for again later */
		free(g);
		free(w);
		return rc;
	}
	g->waiters = w;
	g->next = s->gets;
	if (s->gets)
		s->gets->prev = g;
	s->gets = g;
	s->stats.gets++;
	return 0;
}

static void get_done(struct archive_source *s, struct store_completion *c)
{
	struct object_get *g = (struct object_get *)(uintptr_t)c->tag;
	unlink_get(s, g);
	if (c->result == 0)
		s->stats.bytes += c->body_len;
	/* Kept before any stripe decodes it (the last one may decrypt the
	 * body in place); not for GETs whose stripes close() dropped. */
	struct shared_object *sh = object_cache_shared(&s->cache, g->hash);
	if (c->result == 0 && sh && g->waiters)
		object_cache_put(&s->cache, sh, c->body, c->body_len);
	struct stripe_wait *w = g->waiters;
	while (w) {
		struct stripe_wait *next = w->next;
		int rc = c->result;
		if (rc < 0)
			log_warn("archive source: stripe %llu failed: %s",
				 (unsigned long long)w->stripe, c->error.text);
		else
			rc = decode_one(s, g->hash, w, c->body, c->body_len, next == NULL);
		push_ready(s, w, rc);
		w = next;
	}
	free(c->body);
	free(g);
}

static int archive_poll(struct stripe_source *src, struct source_completion *out, int max)
{
	struct archive_source *s = to_archive(src);
	int got = 0;
	while (got < max) {
		if (!s->ready_head) {
			/* Only as many objects as may be handed out now are
			 * decoded; the rest wait in the store. */
			struct store_completion done[STORE_POLL_BATCH];
			int want = max - got < STORE_POLL_BATCH ? max - got : STORE_POLL_BATCH;
			int n = store_poll(s->store, done, want);
			if (n <= 0)
				break;
			for (int i = 0; i < n; i++)
				get_done(s, &done[i]);
			continue;
		}
		struct stripe_wait *w = s->ready_head;
		s->ready_head = w->next;
		if (!s->ready_head)
			s->ready_tail = NULL;
		out[got].stripe = w->stripe;
		out[got].result = w->result;
		got++;
		free(w);
	}
	/* Stripes of a GET that completed more than max: the owner may have
	 * reset the fd already, and must come back for them. */
	if (s->ready_head)
		wake_owner(s);
	return got;
}

static bool archive_busy(const struct stripe_source *src)
{
	const struct archive_source *s = to_archive_const(src);
	if (s->ready_head)
		return true;
	/* GETs whose stripes were dropped by close() owe nothing. */
	for (const struct object_get *g = s->gets; g; g = g->next)
		if (g->waiters)
			return true;
	return false;
}

static int archive_completion_fd(const struct stripe_source *src)
{
	return store_completion_fd(to_archive_const(src)->store);
}

static bool archive_has_stripe(const struct stripe_source *src, uint64_t stripe)
{
	const struct archive_source *s = to_archive_const(src);
	return archive_stripe_map_find(&s->map, stripe) != NULL;
}

static void free_waiters(struct stripe_wait *w)
{
	while (w) {
		struct stripe_wait *next = w->next;
		free(w);
		w = next;
	}
}

/* The store writes only into its own buffers, so no stripe buffer is in
 * use once the waiters are dropped. GETs still in flight stay listed
 * (without stripes) until their completions are polled or the store
 * closes. */
static void archive_close(struct stripe_source *src)
{
	struct archive_source *s = to_archive(src);
	for (struct object_get *g = s->gets; g; g = g->next) {
		free_waiters(g->waiters);
		g->waiters = NULL;
	}
	free_waiters(s->ready_head);
	s->ready_head = s->ready_tail = NULL;
	object_cache_drop_all(&s->cache);
}

static void archive_destroy(struct stripe_source *src)
{
	struct archive_source *s = to_archive(src);
	archive_close(src);
	/* Completions not polled are dropped by the store, bodies included. */
	struct store *store = s->store;
	s->store = NULL;
	store_close(store);
	struct object_get *g = s->gets;
	while (g) {
		struct object_get *next = g->next;
		free(g);
		g = next;
	}
	s->gets = NULL;
	archive_source_release(s);
}

const struct stripe_source_ops archive_source_ops = {
    .close = archive_close,
    .request = archive_request,
    .poll = archive_poll,
    .busy = archive_busy,
    .completion_fd = archive_completion_fd,
    .has_stripe = archive_has_stripe,
    .destroy = archive_destroy,
};

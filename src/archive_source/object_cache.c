/* The cache of objects several stripes share: candidates counted from the
 * mapping, held objects in a most-recently-used list within a byte budget. */
#include "archive_source/object_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t object_cache_cost(size_t len)
{
	return sizeof(struct cached_object) + len;
}

static int compare_hash_refs(const void *a, const void *b)
{
	const uint8_t *const *x = a, *const *y = b;
	return memcmp(*x, *y, ARCHIVE_HASH_BYTES);
}

static int compare_shared(const void *key, const void *elem)
{
	return memcmp(key, ((const struct shared_object *)elem)->hash, ARCHIVE_HASH_BYTES);
}

/* The length of the run of equal hashes starting at refs[i]. */
static size_t run_length(const uint8_t **refs, size_t count, size_t i)
{
	size_t n = 1;
	while (i + n < count && memcmp(refs[i], refs[i + n], ARCHIVE_HASH_BYTES) == 0)
		n++;
	return n;
}

int object_cache_init(struct object_cache *c, const struct archive_stripe_map *map, size_t budget,
		      struct error *err)
{
	memset(c, 0, sizeof(*c));
	c->budget = budget;
	if (map->count < 2)
		return 0;
	/* Sorting pointers, not the hashes: a few bytes per stripe, for the
	 * time of this call. */
	const uint8_t **refs = malloc(map->count * sizeof(*refs));
	if (!refs)
		return error_set(err, -ENOMEM, "out of memory counting the archive's objects");
	for (size_t i = 0; i < map->count; i++)
		refs[i] = map->entries[i].hash;
	qsort(refs, map->count, sizeof(*refs), compare_hash_refs);
	size_t shared = 0;
	for (size_t i = 0, n; i < map->count; i += n) {
		n = run_length(refs, map->count, i);
		shared += n >= 2;
	}
	if (shared) {
		c->shared = calloc(shared, sizeof(*c->shared));
		if (!c->shared) {
			free(refs);
			return error_set(err, -ENOMEM,
					 "out of memory counting the archive's objects");
		}
	}
	for (size_t i = 0, n; i < map->count; i += n) {
		n = run_length(refs, map->count, i);
		if (n < 2)
			continue;
		struct shared_object *sh = &c->shared[c->shared_count++];
		memcpy(sh->hash, refs[i], ARCHIVE_HASH_BYTES);
		sh->unrequested = n;
	}
	free(refs);
	return 0;
}

struct shared_object *object_cache_shared(struct object_cache *c,
					  const uint8_t hash[ARCHIVE_HASH_BYTES])
{
	if (!c->shared_count)
		return NULL;
	return bsearch(hash, c->shared, c->shared_count, sizeof(*c->shared), compare_shared);
}

static void unlink_held(struct object_cache *c, struct cached_object *o)
{
	if (o->newer)
		o->newer->older = o->older;
	else
		c->newest = o->older;
	if (o->older)
		o->older->newer = o->newer;
	else
		c->oldest = o->newer;
	o->newer = o->older = NULL;
}

static void link_newest(struct object_cache *c, struct cached_object *o)
{
	o->newer = NULL;
	o->older = c->newest;
	if (c->newest)
		c->newest->newer = o;
	else
		c->oldest = o;
	c->newest = o;
}

static void drop(struct object_cache *c, struct cached_object *o)
{
	unlink_held(c, o);
	o->shared->cached = NULL;
	c->bytes -= object_cache_cost(o->len);
	c->held--;
	free(o);
}

void object_cache_put(struct object_cache *c, struct shared_object *sh, const uint8_t *bytes,
		      size_t len)
{
	size_t cost = object_cache_cost(len);
	if (sh->cached || sh->unrequested == 0 || cost > c->budget)
		return;
	uint8_t got[ARCHIVE_HASH_BYTES];
	archive_sha256(bytes, len, got);
	if (memcmp(got, sh->hash, ARCHIVE_HASH_BYTES) != 0)
		return;
	/* A copy of exactly len bytes: a store's body may have room to spare,
	 * which the budget would not see. */
	struct cached_object *o = malloc(cost);
	if (!o)
		return; /* the other stripes fetch it again */
	while (c->oldest && c->bytes + cost > c->budget)
		drop(c, c->oldest);
	o->shared = sh;
	o->len = len;
	memcpy(o->bytes, bytes, len);
	sh->cached = o;
	c->bytes += cost;
	c->held++;
	link_newest(c, o);
}

void object_cache_used(struct object_cache *c, struct shared_object *sh)
{
	struct cached_object *o = sh->cached;
	if (!o)
		return;
	if (sh->unrequested == 0) {
		drop(c, o);
		return;
	}
	unlink_held(c, o);
	link_newest(c, o);
}

void object_cache_drop_all(struct object_cache *c)
{
	while (c->oldest)
		drop(c, c->oldest);
}

void object_cache_free(struct object_cache *c)
{
	object_cache_drop_all(c);
	free(c->shared);
	c->shared = NULL;
	c->shared_count = 0;
}

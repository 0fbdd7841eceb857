/* The archive source's cache of shared objects: objects that two or more
 * stripes of the mapping name (the all-zero stripes of an unencrypted
 * archive, repeated content). Once such an object's GET completed and its
 * bytes hash to its name, they are kept exactly as stored (still encrypted
 * and compressed), so the other stripes naming it decode from the cache
 * instead of fetching the same object again.
 *
 * An object leaves the cache when every stripe that names it has been asked
 * for (nobody needs it any more), when older objects make room for a new one
 * within the byte budget (least recently used first), or on
 * object_cache_drop_all. Objects named by one stripe only are never held.
 *
 * Memory: at most `budget` bytes of held objects (headers included), plus
 * one struct shared_object per object the mapping names more than once.
 * Owner thread only; not locked. */
#ifndef UBIBLK_ARCHIVE_SOURCE_OBJECT_CACHE_H
#define UBIBLK_ARCHIVE_SOURCE_OBJECT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "archive/archive.h"
#include "common/common.h"

struct cached_object;

/* An object more than one stripe names. */
struct shared_object {
	uint8_t hash[ARCHIVE_HASH_BYTES];
	uint64_t unrequested;	      /* stripes naming it not asked for yet */
	struct cached_object *cached; /* NULL: not held */
};

/* A held object: its bytes as the store returned them. */
struct cached_object {
	struct shared_object *shared;
	struct cached_object *newer, *older;
	size_t len;
	uint8_t bytes[];
};

struct object_cache {
	struct shared_object *shared; /* sorted by hash */
	size_t shared_count;
	struct cached_object *newest, *oldest;
	size_t bytes; /* held now, headers included */
	size_t budget;
	size_t held; /* objects held now */
};

/* What holding an object of len bytes costs against the budget. */
size_t object_cache_cost(size_t len);

/* Counts how many stripes of map name each hash and keeps those named two
 * or more times as candidates; nothing is held yet. -ENOMEM. */
int object_cache_init(struct object_cache *c, const struct archive_stripe_map *map, size_t budget,
		      struct error *err);
/* The candidate for hash; NULL when at most one stripe names it. */
struct shared_object *object_cache_shared(struct object_cache *c,
					  const uint8_t hash[ARCHIVE_HASH_BYTES]);
/* Keeps a copy of a GET's body for sh when stripes naming it are still to
 * be asked for, it is not held already, it fits the budget (the least
 * recently used objects are dropped to make room), and its SHA-256 equals
 * sh's hash: the cache never holds bytes other than the named object's. */
void object_cache_put(struct object_cache *c, struct shared_object *sh, const uint8_t *bytes,
		      size_t len);
/* sh's held object served one more stripe: dropped when no stripe naming
 * it is left to ask for, else marked most recently used. */
void object_cache_used(struct object_cache *c, struct shared_object *sh);
/* Drops every held object (the candidates and their counts stay). */
void object_cache_drop_all(struct object_cache *c);
/* Frees everything; c may be zeroed or half built. */
void object_cache_free(struct object_cache *c);

#endif

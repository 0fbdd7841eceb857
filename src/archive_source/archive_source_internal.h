/* The archive source's state, shared by its construction (load.c) and its
 * reading (read.c). Everything here is touched by the owner thread only. */
#ifndef UBIBLK_ARCHIVE_SOURCE_INTERNAL_H
#define UBIBLK_ARCHIVE_SOURCE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "archive/archive.h"
#include "archive_source/archive_source.h"
#include "archive_source/object_cache.h"
#include "fetch/source_internal.h"

/* One requested stripe: waiting for its object, then ready to be polled. */
struct stripe_wait {
	uint64_t stripe;
	uint8_t *buf;
	int result;
	struct stripe_wait *next;
};

/* One GET in flight and the stripes waiting for its object. The GET's tag
 * is this struct's address. After close() its stripes are gone (waiters
 * NULL): the completion is only freed. */
struct object_get {
	uint8_t hash[ARCHIVE_HASH_BYTES];
	struct stripe_wait *waiters;
	struct object_get *prev, *next;
};

struct archive_source {
	struct stripe_source base;
	struct store *store;
	struct archive_stripe_map map;
	struct archive_codec codec;
	size_t object_max; /* the largest object a stripe can have */
	struct object_get *gets;
	struct object_cache cache;
	struct stripe_wait *ready_head, *ready_tail;
	struct archive_source_stats stats;
};

/* The ops table (read.c). */
extern const struct stripe_source_ops archive_source_ops;

/* Frees what the source holds, the store included (load.c). */
void archive_source_release(struct archive_source *s);

#endif

/* What the fetcher and the metadata flusher report to the worker loop. The
 * parts never call each other or the loop: each call that finishes work
 * appends one outcome per stripe to a list the caller owns, and the loop
 * drains it, deciding what follows (a copied stripe asks the flusher for
 * its FETCHED bit; a durable bit changes the shared stripe state).
 *
 * A part appends only while the list has room and otherwise leaves the work
 * for its next call (and says it made progress, so the loop comes back at
 * once). The loop empties the list after every call, and its capacity,
 * OUTCOMES_MAX, covers the most one call can report: every flusher slot
 * finishing a whole header group. */
#ifndef UBIBLK_FETCH_OUTCOME_H
#define UBIBLK_FETCH_OUTCOME_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

enum outcome_kind {
	OUTCOME_COPIED,	      /* fetcher: data written and flushed; wants its FETCHED bit */
	OUTCOME_FETCH_FAILED, /* fetcher: given up (retries spent, or out of memory) */
	OUTCOME_BITS_DURABLE, /* flusher: `bits` of the header are on stable storage */
	OUTCOME_BITS_FAILED,  /* flusher: `bits` could not be stored, retries spent */
};

struct outcome {
	uint64_t stripe;
	enum outcome_kind kind;
	uint8_t bits; /* META_HEADER_* bits, for the flusher's outcomes */
};

struct outcome_list {
	struct outcome *items;
	size_t count;
	size_t capacity;
};

static inline int outcome_list_init(struct outcome_list *l, size_t capacity)
{
	l->items = calloc(capacity, sizeof(*l->items));
	l->count = 0;
	l->capacity = l->items ? capacity : 0;
	return l->items ? 0 : -ENOMEM;
}

static inline void outcome_list_fini(struct outcome_list *l)
{
	free(l->items);
	*l = (struct outcome_list){0};
}

static inline size_t outcome_room(const struct outcome_list *l)
{
	return l->capacity - l->count;
}

/* The caller has checked outcome_room(). */
static inline void outcome_add(struct outcome_list *l, enum outcome_kind kind, uint64_t stripe,
			       uint8_t bits)
{
	l->items[l->count++] = (struct outcome){.stripe = stripe, .kind = kind, .bits = bits};
}

#endif

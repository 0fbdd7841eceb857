/* Open addressing with linear probing, kept at most half full so probes stay
 * short; removal shifts the following entries back instead of leaving
 * tombstones, so a set that sees endless inserts and removals never degrades. */
#include "lazy/sent_set.h"

#include <errno.h>
#include <stdlib.h>

#define MIN_CAPACITY 64u
#define MAX_CAPACITY 16384u

static uint32_t home_slot(const struct sent_set *set, uint64_t key)
{
	/* Fibonacci hashing: neighbouring stripes land far apart. */
	return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & set->mask;
}

int sent_set_init(struct sent_set *set, uint32_t expected)
{
	uint32_t capacity = MIN_CAPACITY;
	while (capacity < MAX_CAPACITY && capacity / 2 < expected)
		capacity <<= 1;
	set->slots = malloc((size_t)capacity * sizeof(*set->slots));
	if (!set->slots)
		return -ENOMEM;
	set->mask = capacity - 1;
	sent_set_clear(set);
	return 0;
}

void sent_set_fini(struct sent_set *set)
{
	free(set->slots);
	set->slots = NULL;
}

void sent_set_clear(struct sent_set *set)
{
	for (uint32_t i = 0; i <= set->mask; i++)
		set->slots[i] = SENT_SET_EMPTY;
	set->count = 0;
}

bool sent_set_contains(const struct sent_set *set, uint64_t key)
{
	for (uint32_t i = home_slot(set, key);; i = (i + 1) & set->mask) {
		if (set->slots[i] == key)
			return true;
		if (set->slots[i] == SENT_SET_EMPTY)
			return false;
	}
}

bool sent_set_insert(struct sent_set *set, uint64_t key)
{
	if (key == SENT_SET_EMPTY)
		return false;
	uint32_t i = home_slot(set, key);
	for (; set->slots[i] != SENT_SET_EMPTY; i = (i + 1) & set->mask)
		if (set->slots[i] == key)
			return true;
	if (set->count >= (set->mask + 1) / 2)
		return false;
	set->slots[i] = key;
	set->count++;
	return true;
}

/* Distance from an entry's home slot to where it sits, along the probe. */
static uint32_t probe_distance(const struct sent_set *set, uint64_t key, uint32_t at)
{
	return (at - home_slot(set, key)) & set->mask;
}

void sent_set_remove(struct sent_set *set, uint64_t key)
{
	uint32_t hole = home_slot(set, key);
	for (;; hole = (hole + 1) & set->mask) {
		if (set->slots[hole] == SENT_SET_EMPTY)
			return;
		if (set->slots[hole] == key)
			break;
	}
	/* Move back every later entry of the run whose probe passes the hole,
	 * so lookups never stop early at it. */
	for (uint32_t next = (hole + 1) & set->mask; set->slots[next] != SENT_SET_EMPTY;
	     next = (next + 1) & set->mask) {
		uint64_t moved = set->slots[next];
		if (probe_distance(set, moved, next) >= ((next - hole) & set->mask)) {
			set->slots[hole] = moved;
			hole = next;
		}
	}
	set->slots[hole] = SENT_SET_EMPTY;
	set->count--;
}

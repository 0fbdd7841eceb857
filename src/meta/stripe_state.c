/* Shared stripe state: one atomic byte per disk stripe, read by every I/O
 * thread (acquire) and changed by the fetch worker (release) only after the
 * matching metadata change is durable. A stripe index past the disk is
 * answered as Failed / not written, so a bad request fails instead of reading
 * outside the array. */
#include "meta/meta.h"

#include "common/common.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* Layout of an entry. COUNTED records that the stripe was counted in
 * `fetched`, so no sequence of set_* calls can count a stripe twice.
 * SOURCELESS keeps "no HAS_SOURCE in the file" once the fetch state has moved
 * on to Failed, so such a stripe can never become Fetched or be counted. */
#define ENTRY_FETCH_MASK 0x03u /* enum stripe_fetch_state */
#define ENTRY_WRITTEN	 0x04u
#define ENTRY_COUNTED	 0x08u
#define ENTRY_SOURCELESS 0x10u

struct stripe_state {
	uint8_t shift;
	uint64_t disk_sectors;
	uint64_t count;
	uint64_t source_count; /* fixed at creation: HAS_SOURCE never changes */
	_Atomic uint64_t fetched_count;
	_Atomic uint64_t failed_count; /* stripes in state Failed now (metrics) */
	_Atomic uint8_t *entries;
};

static uint8_t entry_from_header(uint8_t header)
{
	uint8_t entry;
	if (!(header & META_HEADER_HAS_SOURCE))
		entry = STRIPE_NO_SOURCE | ENTRY_SOURCELESS;
	else if (header & META_HEADER_FETCHED)
		entry = STRIPE_FETCHED | ENTRY_COUNTED;
	else
		entry = STRIPE_NOT_FETCHED;
	if (header & META_HEADER_WRITTEN)
		entry |= ENTRY_WRITTEN;
	return entry;
}

int stripe_state_create(const struct metadata *m, uint64_t disk_sectors, struct stripe_state **out,
			struct error *err)
{
	if (m->shift < META_MIN_SHIFT || m->shift > META_MAX_LOAD_SHIFT)
		return error_set(err, -EINVAL,
				 "Stripe sector count shift %u is out of range (%u..%u)", m->shift,
				 META_MIN_SHIFT, META_MAX_LOAD_SHIFT);
	uint64_t count = meta_stripe_count(disk_sectors, m->shift);
	if (m->header_count < count) {
		return error_set(
		    err, -EINVAL,
		    "The metadata has %llu stripe headers but the disk (%llu sectors) has "
		    "%llu stripes of %u sectors; the metadata file belongs to a smaller disk",
		    (unsigned long long)m->header_count, (unsigned long long)disk_sectors,
		    (unsigned long long)count, 1u << m->shift);
	}
	struct stripe_state *s = calloc(1, sizeof(*s));
	if (!s || count > SIZE_MAX - 1 || !(s->entries = calloc((size_t)count + 1, 1))) {
		free(s);
		return error_set(err, -ENOMEM, "Out of memory for the state of %llu stripes",
				 (unsigned long long)count);
	}
	s->shift = m->shift;
	s->disk_sectors = disk_sectors;
	s->count = count;
	uint64_t fetched = 0;
	for (uint64_t i = 0; i < count; i++) {
		uint8_t entry = entry_from_header(m->headers[i]);
		/* Only counting stripes with a source keeps fetched <= source, so
		 * "fetched == source" means the source is no longer needed. */
		if (entry & ENTRY_COUNTED)
			fetched++;
		if ((entry & ENTRY_FETCH_MASK) != STRIPE_NO_SOURCE)
			s->source_count++;
		atomic_init(&s->entries[i], entry);
	}
	atomic_init(&s->fetched_count, fetched);
	atomic_init(&s->failed_count, 0);
	*out = s;
	return 0;
}

void stripe_state_destroy(struct stripe_state *s)
{
	if (!s)
		return;
	free((void *)s->entries);
	free(s);
}

uint8_t stripe_state_shift(const struct stripe_state *s)
{
	return s->shift;
}

uint64_t stripe_state_count(const struct stripe_state *s)
{
	return s->count;
}

uint64_t stripe_state_disk_sectors(const struct stripe_state *s)
{
	return s->disk_sectors;
}

static bool load_entry(const struct stripe_state *s, uint64_t stripe, uint8_t *entry)
{
	if (stripe >= s->count)
		return false;
	*entry = atomic_load_explicit(&s->entries[stripe], memory_order_acquire);
	return true;
}

enum stripe_fetch_state stripe_state_fetch(const struct stripe_state *s, uint64_t stripe)
{
	uint8_t entry;
	if (!load_entry(s, stripe, &entry))
		return STRIPE_FAILED;
	return (enum stripe_fetch_state)(entry & ENTRY_FETCH_MASK);
}

bool stripe_state_written(const struct stripe_state *s, uint64_t stripe)
{
	uint8_t entry;
	return load_entry(s, stripe, &entry) && (entry & ENTRY_WRITTEN);
}

bool stripe_state_ready(const struct stripe_state *s, uint64_t stripe)
{
	enum stripe_fetch_state state = stripe_state_fetch(s, stripe);
	return state == STRIPE_FETCHED || state == STRIPE_NO_SOURCE;
}

/* Replaces the fetch state with `state`; returns the entry it replaced. */
static uint8_t swap_fetch_state(_Atomic uint8_t *entry, uint8_t state, uint8_t extra)
{
	uint8_t old = atomic_load_explicit(entry, memory_order_relaxed);
	uint8_t next;
	do {
		next = (uint8_t)((old & ~ENTRY_FETCH_MASK) | state | extra);
	} while (!atomic_compare_exchange_weak_explicit(entry, &old, next, memory_order_release,
							memory_order_relaxed));
	return old;
}

void stripe_state_set_fetched(struct stripe_state *s, uint64_t stripe)
{
	if (stripe >= s->count) {
		log_warn("stripe state: FETCHED for stripe %llu beyond the disk's %llu stripes",
			 (unsigned long long)stripe, (unsigned long long)s->count);
		return;
	}
	_Atomic uint8_t *entry = &s->entries[stripe];
	/* A stripe without a source is never fetched, even after it failed:
	 * it stays as it is and is not counted. */
	if (atomic_load_explicit(entry, memory_order_relaxed) & ENTRY_SOURCELESS)
		return;
	uint8_t old = swap_fetch_state(entry, STRIPE_FETCHED, ENTRY_COUNTED);
	if ((old & ENTRY_FETCH_MASK) == STRIPE_FAILED)
		atomic_fetch_sub_explicit(&s->failed_count, 1, memory_order_relaxed);
	if (!(old & ENTRY_COUNTED))
		atomic_fetch_add_explicit(&s->fetched_count, 1, memory_order_relaxed);
}

void stripe_state_set_written(struct stripe_state *s, uint64_t stripe)
{
	if (stripe >= s->count) {
		log_warn("stripe state: WRITTEN for stripe %llu beyond the disk's %llu stripes",
			 (unsigned long long)stripe, (unsigned long long)s->count);
		return;
	}
	atomic_fetch_or_explicit(&s->entries[stripe], ENTRY_WRITTEN, memory_order_release);
}

void stripe_state_set_failed(struct stripe_state *s, uint64_t stripe)
{
	if (stripe >= s->count)
		return; /* already answered as Failed */
	/* Any state may fail, so that requests waiting on a WRITTEN update that
	 * could not be persisted also stop waiting. A fetched stripe keeps being
	 * counted: its data and FETCHED bit are durable. */
	/* Counted before the state changes (only the worker writes states), so
	 * whoever sees the stripe Failed, a guest request failing on it, also
	 * sees it counted. */
	_Atomic uint8_t *entry = &s->entries[stripe];
	if ((atomic_load_explicit(entry, memory_order_relaxed) & ENTRY_FETCH_MASK) != STRIPE_FAILED)
		atomic_fetch_add_explicit(&s->failed_count, 1, memory_order_relaxed);
	swap_fetch_state(entry, STRIPE_FAILED, 0);
}

uint64_t stripe_state_failed_count(const struct stripe_state *s)
{
	return atomic_load_explicit(&s->failed_count, memory_order_relaxed);
}

void stripe_state_counts(const struct stripe_state *s, uint64_t *total, uint64_t *source,
			 uint64_t *fetched)
{
	*total = s->count;
	*source = s->source_count;
	*fetched = atomic_load_explicit(&s->fetched_count, memory_order_relaxed);
}

/* Per-queue I/O tracking: which request each slot holds, for the `queues`
 * RPC, cumulative counters, for `stats`, and duration histograms, the
 * in-flight count and error counters, for `metrics`.
 *
 * One queue thread writes a tracker; the RPC thread reads it. The writer
 * takes no lock and makes no read-modify-write instruction: it is the only
 * writer, so a counter is a relaxed load and a relaxed store, and a slot is
 * published with a per-slot sequence number (a seqlock with one writer). The
 * reader retries a slot that changed under it, so it never reports the
 * sector of one request with the length of another. Ending a request only
 * stores the kind: a reader that still sees the old kind reports the old
 * request, which was true a moment ago.
 *
 * Durations: begin stores the caller's time in the slot (only the queue
 * thread reads it back) and end adds the elapsed time to one bucket and to
 * the sum of the request's kind, plain single-writer adds like the
 * counters. */
#include "io_tracker/io_tracker.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "common/common.h"

#define CACHE_LINE	 64u
#define SNAPSHOT_RETRIES 8

struct tracker_slot {
	_Atomic uint32_t seq; /* odd while the queue thread rewrites the slot */
	_Atomic uint32_t kind;
	_Atomic uint32_t count;
	_Atomic uint64_t sector;
	uint64_t started_ns; /* the queue thread's own: readers never look */
};

struct tracker_histogram {
	_Atomic uint64_t buckets[IO_TRACKER_BUCKETS + 1];
	_Atomic uint64_t sum_ns;
};

struct tracker_counters {
	_Atomic uint64_t bytes_read;
	_Atomic uint64_t bytes_written;
	_Atomic uint64_t read_ops;
	_Atomic uint64_t write_ops;
	_Atomic uint64_t flush_ops;
};

/* Allocated on its own cache lines, so the counters of two queues never
 * share one. */
struct io_tracker {
	struct tracker_counters counters;
	_Atomic uint32_t in_flight;
	struct tracker_histogram duration[IO_KIND_FLUSH + 1];
	_Atomic uint64_t errors[IO_ERROR_KINDS];
	uint32_t nslots;
	struct tracker_slot *slots; /* its own allocation, cache-line aligned */
};

static size_t round_to_cache_line(size_t size)
{
	return (size + CACHE_LINE - 1) & ~(size_t)(CACHE_LINE - 1);
}

struct io_tracker *io_tracker_create(uint32_t slots)
{
	struct io_tracker *t = buffer_alloc(CACHE_LINE, round_to_cache_line(sizeof(*t)));
	if (!t)
		return NULL;
	t->nslots = slots;
	if (slots > 0) {
		t->slots = buffer_alloc(CACHE_LINE,
					round_to_cache_line((size_t)slots * sizeof(*t->slots)));
		if (!t->slots) {
			buffer_free(t);
			return NULL;
		}
	}
	return t;
}

void io_tracker_destroy(struct io_tracker *t)
{
	if (!t)
		return;
	buffer_free(t->slots);
	buffer_free(t);
}

/* Single writer: a plain add, without a locked instruction. */
static void counter_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static void count_request(struct tracker_counters *c, enum io_kind kind, uint32_t count)
{
	uint64_t bytes = (uint64_t)count * SECTOR_SIZE;
	switch (kind) {
	case IO_KIND_READ:
		counter_add(&c->read_ops, 1);
		counter_add(&c->bytes_read, bytes);
		break;
	case IO_KIND_WRITE:
		counter_add(&c->write_ops, 1);
		counter_add(&c->bytes_written, bytes);
		break;
	case IO_KIND_FLUSH:
		counter_add(&c->flush_ops, 1);
		break;
	case IO_KIND_NONE:
		break;
	}
}

void io_tracker_begin(struct io_tracker *t, uint32_t slot, enum io_kind kind, uint64_t sector,
		      uint32_t count, uint64_t now)
{
	if (!t || kind == IO_KIND_NONE)
		return;
	if (kind == IO_KIND_FLUSH) {
		sector = 0;
		count = 0;
	}
	count_request(&t->counters, kind, count);
	if (slot >= t->nslots) {
		log_debug("I/O tracker: slot %u beyond %u slots is counted but not shown", slot,
			  t->nslots);
		return;
	}
	struct tracker_slot *s = &t->slots[slot];
	if (atomic_load_explicit(&s->kind, memory_order_relaxed) != IO_KIND_NONE)
		log_warn("I/O tracker: slot %u reused before it was ended", slot);
	else
		atomic_store_explicit(&t->in_flight,
				      atomic_load_explicit(&t->in_flight, memory_order_relaxed) + 1,
				      memory_order_relaxed);
	s->started_ns = now;
	uint32_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&s->sector, sector, memory_order_relaxed);
	atomic_store_explicit(&s->count, count, memory_order_relaxed);
	atomic_store_explicit(&s->kind, (uint32_t)kind, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

void io_tracker_end(struct io_tracker *t, uint32_t slot, uint64_t now)
{
	if (!t || slot >= t->nslots)
		return;
	struct tracker_slot *s = &t->slots[slot];
	uint32_t kind = atomic_load_explicit(&s->kind, memory_order_relaxed);
	if (kind == IO_KIND_NONE || kind > IO_KIND_FLUSH)
		return; /* never begun: nothing to time */
	atomic_store_explicit(&s->kind, IO_KIND_NONE, memory_order_release);
	atomic_store_explicit(&t->in_flight,
			      atomic_load_explicit(&t->in_flight, memory_order_relaxed) - 1,
			      memory_order_relaxed);
	/* Times come from one clock; a caller's stale batch time must not
	 * wrap to a huge duration. */
	uint64_t elapsed = now > s->started_ns ? now - s->started_ns : 0;
	struct tracker_histogram *h = &t->duration[kind];
	counter_add(&h->buckets[duration_bucket(elapsed, IO_TRACKER_BUCKETS)], 1);
	counter_add(&h->sum_ns, elapsed);
}

void io_tracker_count_error(struct io_tracker *t, enum io_error_kind kind)
{
	if (!t || (unsigned)kind >= IO_ERROR_KINDS)
		return;
	counter_add(&t->errors[kind], 1);
}

uint32_t io_tracker_slot_count(const struct io_tracker *t)
{
	return t ? t->nslots : 0;
}

/* One consistent reading of a slot; false when it is free or kept changing. */
static bool read_slot(const struct tracker_slot *s, struct io_tracker_entry *e)
{
	/* The loads below only read: casting away const for C11's atomic
	 * loads, which take non-const pointers in older compilers. */
	struct tracker_slot *m = (struct tracker_slot *)s;
	for (int attempt = 0; attempt < SNAPSHOT_RETRIES; attempt++) {
		uint32_t before = atomic_load_explicit(&m->seq, memory_order_acquire);
		uint32_t kind = atomic_load_explicit(&m->kind, memory_order_acquire);
		if (kind == IO_KIND_NONE)
			return false;
		if (before & 1u)
			continue;
		uint64_t sector = atomic_load_explicit(&m->sector, memory_order_relaxed);
		uint32_t count = atomic_load_explicit(&m->count, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&m->seq, memory_order_relaxed) != before)
			continue;
		if (kind > IO_KIND_FLUSH)
			return false;
		e->kind = (enum io_kind)kind;
		e->sector = sector;
		e->count = count;
		return true;
	}
	return false;
}

size_t io_tracker_snapshot(const struct io_tracker *t, struct io_tracker_entry *out, size_t max)
{
	size_t n = 0;
	for (uint32_t i = 0; t && i < t->nslots && n < max; i++) {
		if (read_slot(&t->slots[i], &out[n])) {
			out[n].slot = i;
			n++;
		}
	}
	return n;
}

void io_tracker_read_counters(const struct io_tracker *t, struct io_tracker_counters *out)
{
	*out = (struct io_tracker_counters){0};
	if (!t)
		return;
	struct tracker_counters *c = (struct tracker_counters *)&t->counters;
	out->bytes_read = atomic_load_explicit(&c->bytes_read, memory_order_relaxed);
	out->bytes_written = atomic_load_explicit(&c->bytes_written, memory_order_relaxed);
	out->read_ops = atomic_load_explicit(&c->read_ops, memory_order_relaxed);
	out->write_ops = atomic_load_explicit(&c->write_ops, memory_order_relaxed);
	out->flush_ops = atomic_load_explicit(&c->flush_ops, memory_order_relaxed);
}

void io_tracker_read_metrics(const struct io_tracker *t, struct io_tracker_metrics *out)
{
	*out = (struct io_tracker_metrics){0};
	if (!t)
		return;
	struct io_tracker *m = (struct io_tracker *)t; /* loads only, as above */
	out->in_flight = atomic_load_explicit(&m->in_flight, memory_order_relaxed);
	for (int kind = IO_KIND_READ; kind <= IO_KIND_FLUSH; kind++) {
		struct tracker_histogram *h = &m->duration[kind];
		for (int b = 0; b <= IO_TRACKER_BUCKETS; b++)
			out->duration[kind].buckets[b] =
			    atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
		out->duration[kind].sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
	}
	for (int e = 0; e < IO_ERROR_KINDS; e++)
		out->errors[e] = atomic_load_explicit(&m->errors[e], memory_order_relaxed);
}

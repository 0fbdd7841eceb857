/* The per-queue I/O tracker: slots shown in slot order, flushes without a
 * range, slots beyond the tracker counted but not shown, cumulative
 * counters, NULL trackers, and snapshots taken while the queue thread
 * rewrites slots never mixing two requests; the metrics: in-flight count,
 * one duration histogram per kind, errors by kind, and the bucket layout
 * they share. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/common.h"
#include "io_tracker/io_tracker.h"

static size_t snapshot(const struct io_tracker *t, struct io_tracker_entry *out, size_t max)
{
	return io_tracker_snapshot(t, out, max);
}

static void assert_entry(const struct io_tracker_entry *e, uint32_t slot, enum io_kind kind,
			 uint64_t sector, uint32_t count)
{
	assert_int_equal(e->slot, slot);
	assert_int_equal(e->kind, kind);
	assert_int_equal(e->sector, sector);
	assert_int_equal(e->count, count);
}

static void test_new_tracker_is_empty(void **state)
{
	struct io_tracker *t = io_tracker_create(8);
	assert_non_null(t);
	assert_int_equal(io_tracker_slot_count(t), 8);
	struct io_tracker_entry e[8];
	assert_int_equal(snapshot(t, e, 8), 0);
	struct io_tracker_counters c;
	io_tracker_read_counters(t, &c);
	assert_int_equal(c.bytes_read + c.bytes_written + c.read_ops + c.write_ops + c.flush_ops,
			 0);
	io_tracker_destroy(t);
}

/* Four slots: flush@0, read@1 (2,3), write@2 (4,5), flush@3. */
static void test_snapshot_in_slot_order(void **state)
{
	struct io_tracker *t = io_tracker_create(8);
	/* Begun out of order: the snapshot still follows slot order. */
	io_tracker_begin(t, 3, IO_KIND_FLUSH, 77, 9, 0);
	io_tracker_begin(t, 1, IO_KIND_READ, 2, 3, 0);
	io_tracker_begin(t, 0, IO_KIND_FLUSH, 0, 0, 0);
	io_tracker_begin(t, 2, IO_KIND_WRITE, 4, 5, 0);
	struct io_tracker_entry e[8];
	assert_int_equal(snapshot(t, e, 8), 4);
	assert_entry(&e[0], 0, IO_KIND_FLUSH, 0, 0);
	assert_entry(&e[1], 1, IO_KIND_READ, 2, 3);
	assert_entry(&e[2], 2, IO_KIND_WRITE, 4, 5);
	/* A flush has no range, whatever the caller passed. */
	assert_entry(&e[3], 3, IO_KIND_FLUSH, 0, 0);

	io_tracker_end(t, 1, 0);
	io_tracker_end(t, 3, 0);
	assert_int_equal(snapshot(t, e, 8), 2);
	assert_entry(&e[0], 0, IO_KIND_FLUSH, 0, 0);
	assert_entry(&e[1], 2, IO_KIND_WRITE, 4, 5);

	/* A freed slot is reused for the next request. */
	io_tracker_begin(t, 1, IO_KIND_WRITE, 1000, 8, 0);
	assert_int_equal(snapshot(t, e, 8), 3);
	assert_entry(&e[1], 1, IO_KIND_WRITE, 1000, 8);
	io_tracker_destroy(t);
}

static void test_snapshot_respects_max(void **state)
{
	struct io_tracker *t = io_tracker_create(4);
	for (uint32_t i = 0; i < 4; i++)
		io_tracker_begin(t, i, IO_KIND_READ, i, 1, 0);
	struct io_tracker_entry e[2];
	assert_int_equal(snapshot(t, e, 2), 2);
	assert_entry(&e[1], 1, IO_KIND_READ, 1, 1);
	assert_int_equal(snapshot(t, e, 0), 0);
	io_tracker_destroy(t);
}

static void test_counters(void **state)
{
	struct io_tracker *t = io_tracker_create(4);
	io_tracker_begin(t, 0, IO_KIND_READ, 0, 8, 0);
	io_tracker_begin(t, 1, IO_KIND_READ, 8, 1, 0);
	io_tracker_begin(t, 2, IO_KIND_WRITE, 100, 16, 0);
	io_tracker_begin(t, 3, IO_KIND_FLUSH, 0, 0, 0);
	/* Ending a request changes no counter: they count submissions. */
	for (uint32_t i = 0; i < 4; i++)
		io_tracker_end(t, i, 0);
	io_tracker_begin(t, 0, IO_KIND_FLUSH, 0, 0, 0);
	struct io_tracker_counters c;
	io_tracker_read_counters(t, &c);
	assert_int_equal(c.read_ops, 2);
	assert_int_equal(c.bytes_read, 9 * 512);
	assert_int_equal(c.write_ops, 1);
	assert_int_equal(c.bytes_written, 16 * 512);
	assert_int_equal(c.flush_ops, 2);
	io_tracker_destroy(t);
}

/* Slots beyond the tracker (a front end with more slots than expected) are
 * counted in the stats but not shown, and never written out of bounds. */
static void test_slots_beyond_the_tracker(void **state)
{
	struct io_tracker *t = io_tracker_create(2);
	io_tracker_begin(t, 2, IO_KIND_READ, 5, 4, 0);
	io_tracker_begin(t, 1000000, IO_KIND_WRITE, 6, 2, 0);
	io_tracker_begin(t, UINT32_MAX, IO_KIND_FLUSH, 0, 0, 0);
	io_tracker_end(t, 2, 0);
	io_tracker_end(t, UINT32_MAX, 0);
	io_tracker_begin(t, 1, IO_KIND_READ, 7, 1, 0);
	struct io_tracker_entry e[4];
	assert_int_equal(snapshot(t, e, 4), 1);
	assert_entry(&e[0], 1, IO_KIND_READ, 7, 1);
	struct io_tracker_counters c;
	io_tracker_read_counters(t, &c);
	assert_int_equal(c.read_ops, 2);
	assert_int_equal(c.bytes_read, 5 * 512);
	assert_int_equal(c.write_ops, 1);
	assert_int_equal(c.bytes_written, 2 * 512);
	assert_int_equal(c.flush_ops, 1);
	io_tracker_destroy(t);
}

static void test_zero_slots(void **state)
{
	struct io_tracker *t = io_tracker_create(0);
	assert_non_null(t);
	io_tracker_begin(t, 0, IO_KIND_WRITE, 1, 1, 0);
	io_tracker_end(t, 0, 0);
	struct io_tracker_entry e[1];
	assert_int_equal(snapshot(t, e, 1), 0);
	struct io_tracker_counters c;
	io_tracker_read_counters(t, &c);
	assert_int_equal(c.write_ops, 1);
	io_tracker_destroy(t);
}

/* A front end without trackers passes NULL everywhere. */
static void test_null_tracker(void **state)
{
	io_tracker_begin(NULL, 0, IO_KIND_READ, 0, 1, 0);
	io_tracker_end(NULL, 0, 0);
	assert_int_equal(io_tracker_slot_count(NULL), 0);
	struct io_tracker_entry e[1];
	assert_int_equal(snapshot(NULL, e, 1), 0);
	struct io_tracker_counters c = {.read_ops = 42};
	io_tracker_read_counters(NULL, &c);
	assert_int_equal(c.read_ops, 0);
	io_tracker_destroy(NULL);
}

static void test_kind_none_is_ignored(void **state)
{
	struct io_tracker *t = io_tracker_create(1);
	io_tracker_begin(t, 0, IO_KIND_NONE, 1, 1, 0);
	struct io_tracker_entry e[1];
	assert_int_equal(snapshot(t, e, 1), 0);
	struct io_tracker_counters c;
	io_tracker_read_counters(t, &c);
	assert_int_equal(c.read_ops + c.write_ops + c.flush_ops, 0);
	io_tracker_destroy(t);
}

/* ---- a queue thread rewriting slots while snapshots are taken ---- */

#define RACE_SLOTS  4
#define RACE_ROUNDS 200000u

struct race {
	struct io_tracker *t;
	atomic_bool done;
};

/* Every request it records has count == sector % 1000 + 1, so a snapshot
 * entry that mixes two requests breaks the rule. */
static void *race_writer(void *arg)
{
	struct race *r = arg;
	for (uint32_t i = 0; i < RACE_ROUNDS; i++) {
		uint32_t slot = i % RACE_SLOTS;
		uint64_t sector = (uint64_t)i * 7919u;
		io_tracker_begin(r->t, slot, (i & 1) ? IO_KIND_WRITE : IO_KIND_READ, sector,
				 (uint32_t)(sector % 1000 + 1), 0);
		if (i % 3 == 0)
			io_tracker_begin(r->t, RACE_SLOTS + 1, IO_KIND_READ, 0, 1, 0);
		io_tracker_end(r->t, slot, 0);
	}
	atomic_store(&r->done, true);
	return NULL;
}

static void test_snapshots_during_updates(void **state)
{
	struct race r = {.t = io_tracker_create(RACE_SLOTS)};
	pthread_t writer;
	assert_int_equal(pthread_create(&writer, NULL, race_writer, &r), 0);
	uint64_t seen = 0;
	while (!atomic_load(&r.done)) {
		struct io_tracker_entry e[RACE_SLOTS];
		size_t n = snapshot(r.t, e, RACE_SLOTS);
		for (size_t i = 0; i < n; i++) {
			assert_true(e[i].kind == IO_KIND_READ || e[i].kind == IO_KIND_WRITE);
			assert_int_equal(e[i].count, e[i].sector % 1000 + 1);
			assert_true(e[i].slot < RACE_SLOTS);
			if (i > 0)
				assert_true(e[i].slot > e[i - 1].slot);
		}
		seen += n;
	}
	pthread_join(writer, NULL);
	struct io_tracker_counters c;
	io_tracker_read_counters(r.t, &c);
	assert_int_equal(c.read_ops + c.write_ops, RACE_ROUNDS + (RACE_ROUNDS + 2) / 3);
	print_message("entries seen during updates: %llu\n", (unsigned long long)seen);
	io_tracker_destroy(r.t);
}

static uint64_t histogram_count(const struct io_tracker_histogram *h)
{
	uint64_t n = 0;
	for (int b = 0; b <= IO_TRACKER_BUCKETS; b++)
		n += h->buckets[b];
	return n;
}

/* Bucket k holds (8 us << (k-1), 8 us << k]; the last one everything longer. */
static void test_duration_buckets(void **state)
{
	(void)state;
	assert_int_equal(duration_bucket(0, 18), 0);
	assert_int_equal(duration_bucket(8000, 18), 0);
	assert_int_equal(duration_bucket(8001, 18), 1);
	assert_int_equal(duration_bucket(16000, 18), 1);
	assert_int_equal(duration_bucket(16001, 18), 2);
	assert_int_equal(duration_bucket(24000, 18), 2);
	assert_int_equal(duration_bucket(32000, 18), 2);
	assert_int_equal(duration_bucket(32001, 18), 3);
	for (unsigned k = 1; k < 18; k++) {
		uint64_t bound = (uint64_t)8000 << k;
		assert_int_equal(duration_bucket(bound, 18), k);
		assert_int_equal(duration_bucket(bound + 1, 18), k + 1);
		assert_int_equal(duration_bucket(bound - 1, 18), k);
	}
	assert_int_equal(duration_bucket(1048576000ull, 18), 17);
	assert_int_equal(duration_bucket(1048576001ull, 18), 18);
	assert_int_equal(duration_bucket(UINT64_MAX, 18), 18);
	assert_int_equal(duration_bucket(67108864000ull, 24), 23);
	assert_int_equal(duration_bucket(67108864001ull, 24), 24);
}

#define T0 1000000000ull /* any start time: the tracker only subtracts */

static void test_metrics_in_flight_and_durations(void **state)
{
	(void)state;
	struct io_tracker *t = io_tracker_create(8);
	assert_non_null(t);
	struct io_tracker_metrics m;
	io_tracker_read_metrics(t, &m);
	assert_int_equal(m.in_flight, 0);
	io_tracker_begin(t, 0, IO_KIND_READ, 0, 8, T0);
	io_tracker_begin(t, 1, IO_KIND_WRITE, 8, 8, T0);
	io_tracker_begin(t, 2, IO_KIND_FLUSH, 0, 0, T0 + 5);
	io_tracker_begin(t, 3, IO_KIND_READ, 16, 8, T0 + 10);
	io_tracker_read_metrics(t, &m);
	assert_int_equal(m.in_flight, 4);
	assert_int_equal(histogram_count(&m.duration[IO_KIND_READ]), 0);
	io_tracker_end(t, 0, T0 + 2000000);  /* 2 ms: bucket 8 (1.024 to 2.048 ms) */
	io_tracker_end(t, 2, T0 + 5 + 8000); /* exactly 8 us: bucket 0 */
	io_tracker_read_metrics(t, &m);
	assert_int_equal(m.in_flight, 2);
	assert_int_equal(histogram_count(&m.duration[IO_KIND_READ]), 1);
	assert_int_equal(m.duration[IO_KIND_READ].buckets[8], 1);
	assert_int_equal(m.duration[IO_KIND_READ].sum_ns, 2000000);
	assert_int_equal(m.duration[IO_KIND_FLUSH].buckets[0], 1);
	assert_int_equal(m.duration[IO_KIND_FLUSH].sum_ns, 8000);
	assert_int_equal(histogram_count(&m.duration[IO_KIND_WRITE]), 0);
	/* Ending a slot twice, or one never begun, changes nothing. */
	io_tracker_end(t, 0, T0 + 9000000);
	io_tracker_end(t, 5, T0 + 9000000);
	io_tracker_end(t, 100, T0 + 9000000);
	/* Over the last bound: the overflow bucket. */
	io_tracker_end(t, 1, T0 + 1048576001ull);
	/* A batch time older than the start (a caller's stale read) is 0. */
	io_tracker_end(t, 3, T0);
	io_tracker_read_metrics(t, &m);
	assert_int_equal(m.in_flight, 0);
	assert_int_equal(histogram_count(&m.duration[IO_KIND_READ]), 2);
	assert_int_equal(m.duration[IO_KIND_READ].buckets[0], 1);
	assert_int_equal(m.duration[IO_KIND_READ].sum_ns, 2000000);
	assert_int_equal(m.duration[IO_KIND_WRITE].buckets[IO_TRACKER_BUCKETS], 1);
	assert_int_equal(histogram_count(&m.duration[IO_KIND_WRITE]), 1);
	assert_int_equal(histogram_count(&m.duration[IO_KIND_NONE]), 0);
	/* Slots beyond the tracker are counted but neither in flight nor timed. */
	io_tracker_begin(t, 9, IO_KIND_READ, 0, 8, T0);
	io_tracker_end(t, 9, T0 + 1000);
	io_tracker_read_metrics(t, &m);
	assert_int_equal(m.in_flight, 0);
	assert_int_equal(histogram_count(&m.duration[IO_KIND_READ]), 2);
	io_tracker_destroy(t);
}

static void test_errors_by_kind(void **state)
{
	(void)state;
	struct io_tracker *t = io_tracker_create(0);
	assert_non_null(t);
	io_tracker_count_error(t, IO_ERROR_IO);
	io_tracker_count_error(t, IO_ERROR_FAILED_STRIPE);
	io_tracker_count_error(t, IO_ERROR_FAILED_STRIPE);
	io_tracker_count_error(t, IO_ERROR_BAD_REQUEST);
	io_tracker_count_error(t, IO_ERROR_BAD_REQUEST);
	io_tracker_count_error(t, IO_ERROR_BAD_REQUEST);
	io_tracker_count_error(t, (enum io_error_kind)IO_ERROR_KINDS); /* ignored */
	io_tracker_count_error(NULL, IO_ERROR_IO);		       /* no tracker: nothing */
	struct io_tracker_metrics m;
	io_tracker_read_metrics(t, &m);
	assert_int_equal(m.errors[IO_ERROR_IO], 1);
	assert_int_equal(m.errors[IO_ERROR_FAILED_STRIPE], 2);
	assert_int_equal(m.errors[IO_ERROR_BAD_REQUEST], 3);
	io_tracker_read_metrics(NULL, &m);
	assert_int_equal(m.errors[IO_ERROR_BAD_REQUEST], 0);
	assert_int_equal(m.in_flight, 0);
	io_tracker_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_tracker_is_empty),
	    cmocka_unit_test(test_snapshot_in_slot_order),
	    cmocka_unit_test(test_snapshot_respects_max),
	    cmocka_unit_test(test_counters),
	    cmocka_unit_test(test_slots_beyond_the_tracker),
	    cmocka_unit_test(test_zero_slots),
	    cmocka_unit_test(test_null_tracker),
	    cmocka_unit_test(test_kind_none_is_ignored),
	    cmocka_unit_test(test_snapshots_during_updates),
	    cmocka_unit_test(test_duration_buckets),
	    cmocka_unit_test(test_metrics_in_flight_and_durations),
	    cmocka_unit_test(test_errors_by_kind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

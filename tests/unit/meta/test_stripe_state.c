/* The shared stripe state (states from the headers, counts, transitions),
 * plus the hardening: stripes past the disk read as Failed / not written,
 * and a file with fewer headers than the disk has stripes is refused. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "meta/meta.h"

#define F META_HEADER_FETCHED
#define W META_HEADER_WRITTEN
#define S META_HEADER_HAS_SOURCE

/* 8 stripes of 2048 sectors: 5 with a source, 2 of them fetched. */
static uint8_t sample_headers[8] = {S | F, S, S | F | W, S, S, 0, W, 0};

static struct stripe_state *create(uint8_t *headers, uint64_t count, uint64_t disk_sectors)
{
	struct metadata m = {.shift = 11, .header_count = count, .headers = headers};
	struct stripe_state *s = NULL;
	struct error err = {0};
	assert_int_equal(stripe_state_create(&m, disk_sectors, &s, &err), 0);
	return s;
}

static void initial_states_come_from_the_headers(void **state)
{
	struct stripe_state *s = create(sample_headers, 8, 8 * 2048);
	assert_int_equal(stripe_state_shift(s), 11);
	assert_int_equal(stripe_state_count(s), 8);
	assert_int_equal(stripe_state_disk_sectors(s), 8 * 2048);
	assert_int_equal(stripe_state_fetch(s, 0), STRIPE_FETCHED);
	assert_int_equal(stripe_state_fetch(s, 1), STRIPE_NOT_FETCHED);
	assert_int_equal(stripe_state_fetch(s, 2), STRIPE_FETCHED);
	assert_int_equal(stripe_state_fetch(s, 5), STRIPE_NO_SOURCE);
	assert_int_equal(stripe_state_fetch(s, 6), STRIPE_NO_SOURCE);
	assert_false(stripe_state_written(s, 0));
	assert_true(stripe_state_written(s, 2));
	assert_true(stripe_state_written(s, 6));
	uint64_t total, source, fetched;
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(total, 8);
	assert_int_equal(source, 5);
	assert_int_equal(fetched, 2);
	stripe_state_destroy(s);
}

static void fetched_without_source_stays_no_source(void **state)
{
	uint8_t headers[2] = {F, S};
	struct stripe_state *s = create(headers, 2, 2 * 2048);
	assert_int_equal(stripe_state_fetch(s, 0), STRIPE_NO_SOURCE);
	uint64_t total, source, fetched;
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(source, 1);
	assert_int_equal(fetched, 0); /* fetched never exceeds source */
	stripe_state_set_fetched(s, 0);
	assert_int_equal(stripe_state_fetch(s, 0), STRIPE_NO_SOURCE);
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(fetched, 0);
	stripe_state_destroy(s);
}

/* A stripe without a source that failed (a WRITTEN update that could not be
 * made durable) is still a stripe without a source: fetching it is refused,
 * so it is never counted and fetched stays <= source. */
static void failed_stripe_without_source_is_never_counted_as_fetched(void **state)
{
	struct stripe_state *s = create(sample_headers, 8, 8 * 2048);
	uint64_t total, source, fetched;
	stripe_state_set_failed(s, 5);
	assert_int_equal(stripe_state_fetch(s, 5), STRIPE_FAILED);
	stripe_state_set_fetched(s, 5);
	assert_int_not_equal(stripe_state_fetch(s, 5), STRIPE_FETCHED);
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(source, 5);
	assert_int_equal(fetched, 2);
	stripe_state_destroy(s);
}

static void setting_fetched_counts_once(void **state)
{
	struct stripe_state *s = create(sample_headers, 8, 8 * 2048);
	uint64_t total, source, fetched;
	stripe_state_set_fetched(s, 1);
	assert_int_equal(stripe_state_fetch(s, 1), STRIPE_FETCHED);
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(fetched, 3);
	stripe_state_set_fetched(s, 1);
	stripe_state_set_fetched(s, 0);
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(fetched, 3);
	assert_false(stripe_state_written(s, 1));
	stripe_state_set_written(s, 1);
	assert_true(stripe_state_written(s, 1));
	assert_int_equal(stripe_state_fetch(s, 1), STRIPE_FETCHED); /* independent bits */
	stripe_state_set_written(s, 5);
	assert_true(stripe_state_written(s, 5));
	assert_int_equal(stripe_state_fetch(s, 5), STRIPE_NO_SOURCE);
	stripe_state_destroy(s);
}

static void ready_means_fetched_or_no_source(void **state)
{
	struct stripe_state *s = create(sample_headers, 8, 8 * 2048);
	assert_true(stripe_state_ready(s, 0));	/* Fetched */
	assert_true(stripe_state_ready(s, 5));	/* NoSource */
	assert_false(stripe_state_ready(s, 1)); /* NotFetched */
	stripe_state_destroy(s);
}

static void failed_is_neither_fetched_nor_ready(void **state)
{
	struct stripe_state *s = create(sample_headers, 8, 8 * 2048);
	uint64_t total, source, fetched;
	stripe_state_set_failed(s, 1);
	assert_int_equal(stripe_state_fetch(s, 1), STRIPE_FAILED);
	assert_false(stripe_state_ready(s, 1));
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(fetched, 2);

	/* A stripe waiting on a WRITTEN update can fail too; its durable fetch
	 * stays counted, and fetching it again does not count it twice. */
	stripe_state_set_failed(s, 0);
	assert_int_equal(stripe_state_fetch(s, 0), STRIPE_FAILED);
	stripe_state_set_fetched(s, 0);
	assert_int_equal(stripe_state_fetch(s, 0), STRIPE_FETCHED);
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(fetched, 2);

	/* Failing keeps the written bit. */
	stripe_state_set_failed(s, 2);
	assert_true(stripe_state_written(s, 2));
	stripe_state_destroy(s);
}

static void stripes_past_the_disk_are_safe(void **state)
{
	/* More headers than the disk needs: only the disk's stripes are tracked. */
	uint8_t headers[16];
	memset(headers, S, sizeof(headers));
	struct stripe_state *s = create(headers, 16, 3 * 2048 + 1); /* partial 4th stripe */
	assert_int_equal(stripe_state_count(s), 4);
	uint64_t total, source, fetched;
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(total, 4);
	assert_int_equal(source, 4);
	uint64_t beyond[] = {4, 15, 16, UINT64_MAX};
	for (size_t i = 0; i < sizeof(beyond) / sizeof(beyond[0]); i++) {
		assert_int_equal(stripe_state_fetch(s, beyond[i]), STRIPE_FAILED);
		assert_false(stripe_state_written(s, beyond[i]));
		assert_false(stripe_state_ready(s, beyond[i]));
		stripe_state_set_fetched(s, beyond[i]);
		stripe_state_set_written(s, beyond[i]);
		stripe_state_set_failed(s, beyond[i]);
		assert_int_equal(stripe_state_fetch(s, beyond[i]), STRIPE_FAILED);
	}
	stripe_state_counts(s, &total, &source, &fetched);
	assert_int_equal(fetched, 0);
	assert_int_equal(stripe_state_fetch(s, 3), STRIPE_NOT_FETCHED);
	stripe_state_destroy(s);
}

static void too_few_headers_for_the_disk_are_refused(void **state)
{
	uint8_t headers[3] = {S, S, S};
	struct metadata m = {.shift = 11, .header_count = 3, .headers = headers};
	struct stripe_state *s = NULL;
	struct error err = {0};
	assert_int_equal(stripe_state_create(&m, 3 * 2048 + 1, &s, &err), -EINVAL);
	assert_null(s);
	assert_non_null(strstr(err.text, "3 stripe headers"));
	assert_non_null(strstr(err.text, "4 stripes"));
	assert_int_equal(stripe_state_create(&m, 3 * 2048, &s, &err), 0);
	stripe_state_destroy(s);
}

static void empty_disk_and_bad_shift(void **state)
{
	struct metadata m = {.shift = 11, .header_count = 0, .headers = NULL};
	struct stripe_state *s = NULL;
	struct error err = {0};
	assert_int_equal(stripe_state_create(&m, 0, &s, &err), 0);
	assert_int_equal(stripe_state_count(s), 0);
	assert_int_equal(stripe_state_fetch(s, 0), STRIPE_FAILED);
	stripe_state_destroy(s);
	stripe_state_destroy(NULL);

	uint8_t headers[4] = {0};
	m = (struct metadata){.shift = 18, .header_count = 4, .headers = headers};
	assert_int_equal(stripe_state_create(&m, 2048, &s, &err), -EINVAL);
	assert_non_null(strstr(err.text, "out of range"));
}

/* One writer (the worker) and a reader thread: the reader never sees a stripe
 * go back from Fetched, and the final count is exact. */
#define RACE_STRIPES 20000

struct race {
	struct stripe_state *s;
	atomic_bool done;
	bool went_back;
};

static void *race_reader(void *arg)
{
	struct race *r = arg;
	while (!atomic_load(&r->done)) {
		for (uint64_t i = 0; i + 1 < RACE_STRIPES; i++) {
			/* Stripes are set in ascending order, so a later stripe being
			 * fetched implies every earlier one is. */
			if (stripe_state_fetch(r->s, i + 1) == STRIPE_FETCHED &&
			    stripe_state_fetch(r->s, i) != STRIPE_FETCHED)
				r->went_back = true;
		}
	}
	return NULL;
}

static void one_writer_many_readers(void **state)
{
	uint8_t *headers = malloc(RACE_STRIPES);
	memset(headers, S, RACE_STRIPES);
	struct race r = {.s = create(headers, RACE_STRIPES, (uint64_t)RACE_STRIPES * 2048)};
	atomic_init(&r.done, false);
	pthread_t reader;
	assert_int_equal(pthread_create(&reader, NULL, race_reader, &r), 0);
	for (uint64_t i = 0; i < RACE_STRIPES; i++) {
		stripe_state_set_fetched(r.s, i);
		stripe_state_set_written(r.s, i);
	}
	atomic_store(&r.done, true);
	pthread_join(reader, NULL);
	assert_false(r.went_back);
	uint64_t total, source, fetched;
	stripe_state_counts(r.s, &total, &source, &fetched);
	assert_int_equal(fetched, RACE_STRIPES);
	stripe_state_destroy(r.s);
	free(headers);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(initial_states_come_from_the_headers),
	    cmocka_unit_test(fetched_without_source_stays_no_source),
	    cmocka_unit_test(failed_stripe_without_source_is_never_counted_as_fetched),
	    cmocka_unit_test(setting_fetched_counts_once),
	    cmocka_unit_test(ready_means_fetched_or_no_source),
	    cmocka_unit_test(failed_is_neither_fetched_nor_ready),
	    cmocka_unit_test(stripes_past_the_disk_are_safe),
	    cmocka_unit_test(too_few_headers_for_the_disk_are_refused),
	    cmocka_unit_test(empty_disk_and_bad_shift),
	    cmocka_unit_test(one_writer_many_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

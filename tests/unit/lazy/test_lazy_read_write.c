/* The lazy device over a real fetch worker: where reads and writes go for
 * each stripe state and option (copy_on_read, track_written, a raw image). */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "lazy_test_util.h"

#include <stdlib.h>
#include <string.h>

static int setup_copy_on_read(void **state)
{
	return lazy_fixture_open(state, &(struct lazy_setup){.copy_on_read = true});
}

static int setup_image_reads(void **state)
{
	return lazy_fixture_open(state, &(struct lazy_setup){.copy_on_read = false});
}

static int setup_track_written(void **state)
{
	return lazy_fixture_open(state,
				 &(struct lazy_setup){.copy_on_read = true, .track_written = true});
}

static int setup_track_written_image(void **state)
{
	return lazy_fixture_open(state, &(struct lazy_setup){.track_written = true});
}

/* Stripe 2 fetched already: a write to it waits for WRITTEN only. */
static int setup_track_written_fetched(void **state)
{
	struct lazy_setup s = {.copy_on_read = true, .track_written = true};
	s.preset[2] = META_HEADER_FETCHED;
	return lazy_fixture_open(state, &s);
}

static int setup_sync_image_reads(void **state)
{
	return lazy_fixture_open(state, &(struct lazy_setup){.engine = BDEV_ENGINE_SYNC});
}

static int setup_sync_copy_on_read(void **state)
{
	return lazy_fixture_open(
	    state, &(struct lazy_setup){.engine = BDEV_ENGINE_SYNC, .copy_on_read = true});
}

/* Stripe 3 beyond a 2.5-stripe image (so it has no source); stripe 2 ends
 * half-way through the image. */
static int setup_short_image(void **state)
{
	return lazy_fixture_open(state,
				 &(struct lazy_setup){.image_sectors = 2 * STRIPE_SECTORS + 32});
}

static uint64_t stripe_start(uint64_t stripe)
{
	return stripe * STRIPE_SECTORS;
}

static void test_read_fetches_then_reads_the_disk(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	assert_int_equal(stripe_state_fetch(env->state, 1), STRIPE_NOT_FETCHED);
	assert_int_equal(lazy_read(f->ch, stripe_start(1) + 8, env->buf, 8192, 1), 0);
	expected_fetched(env, stripe_start(1) + 8, 16, f->expect);
	assert_memory_equal(env->buf, f->expect, 8192);

	assert_int_equal(stripe_state_fetch(env->state, 1), STRIPE_FETCHED);
	assert_int_equal(metadata_header(env, 1), META_HEADER_HAS_SOURCE | META_HEADER_FETCHED);
	read_disk_file(env, stripe_start(1), STRIPE_SECTORS, env->buf);
	expected_fetched(env, stripe_start(1), STRIPE_SECTORS, f->expect);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
	assert_int_equal(env->source_reads[1], 1);
	/* Nothing else was fetched. */
	assert_true(disk_untouched(env, stripe_start(0), STRIPE_SECTORS));
	assert_true(disk_untouched(env, stripe_start(2), 2 * STRIPE_SECTORS));

	/* Now straight from the disk: no second source read. */
	assert_int_equal(lazy_read(f->ch, stripe_start(1), env->buf, STRIPE_BYTES, 2), 0);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
	assert_int_equal(env->source_reads[1], 1);
	assert_int_equal(lazy_flush(f->ch, 3), 0);
}

/* copy_on_read false: a read inside one stripe comes from the image and
 * leaves the disk and the metadata alone. */
static void test_single_stripe_read_from_the_image(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	assert_int_equal(lazy_read(f->ch, stripe_start(2), env->buf, STRIPE_BYTES, 1), 0);
	expected_fetched(env, stripe_start(2), STRIPE_SECTORS, f->expect);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
	assert_int_equal(stripe_state_fetch(env->state, 2), STRIPE_NOT_FETCHED);
	assert_int_equal(metadata_header(env, 2), META_HEADER_HAS_SOURCE);
	assert_true(disk_untouched(env, 0, TEST_DISK_SECTORS));
	for (unsigned i = 0; i < TEST_STRIPES; i++)
		assert_int_equal(env->source_reads[i], 0);
}

/* ...but a read across two stripes fetches both and reads the disk. */
static void test_cross_stripe_read_fetches_both(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	uint64_t sector = stripe_start(2) - 8;
	assert_int_equal(lazy_read(f->ch, sector, env->buf, 16 * SECTOR_SIZE, 1), 0);
	expected_fetched(env, sector, 16, f->expect);
	assert_memory_equal(env->buf, f->expect, 16 * SECTOR_SIZE);
	assert_int_equal(stripe_state_fetch(env->state, 1), STRIPE_FETCHED);
	assert_int_equal(stripe_state_fetch(env->state, 2), STRIPE_FETCHED);
	assert_int_equal(env->source_reads[1], 1);
	assert_int_equal(env->source_reads[2], 1);
	read_disk_file(env, stripe_start(1), 2 * STRIPE_SECTORS, env->buf);
	expected_fetched(env, stripe_start(1), 2 * STRIPE_SECTORS, f->expect);
	assert_memory_equal(env->buf, f->expect, 2 * STRIPE_BYTES);
	assert_true(disk_untouched(env, stripe_start(0), STRIPE_SECTORS));
	assert_true(disk_untouched(env, stripe_start(3), STRIPE_SECTORS));
}

/* A write to an unfetched stripe fetches it first: the rest of the stripe
 * holds the image's data, the written part the guest's. */
static void test_write_fetches_first(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	unsigned char *data = env->buf + 2 * STRIPE_BYTES;
	fill_random(data, 4096, 99);
	uint64_t sector = stripe_start(2) + 16;
	assert_int_equal(lazy_write(f->ch, sector, data, 4096, 1), 0);
	assert_int_equal(stripe_state_fetch(env->state, 2), STRIPE_FETCHED);
	assert_int_equal(env->source_reads[2], 1);

	expected_fetched(env, stripe_start(2), STRIPE_SECTORS, f->expect);
	memcpy(f->expect + 16 * SECTOR_SIZE, data, 4096);
	assert_int_equal(lazy_read(f->ch, stripe_start(2), env->buf, STRIPE_BYTES, 2), 0);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
	read_disk_file(env, stripe_start(2), STRIPE_SECTORS, env->buf);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);

	/* A second write to the stripe goes straight to the disk. */
	assert_int_equal(lazy_write(f->ch, stripe_start(2), data, 4096, 3), 0);
	assert_int_equal(env->source_reads[2], 1);
	assert_int_equal(lazy_flush(f->ch, 4), 0);
	/* Without track_written nothing is marked WRITTEN. */
	assert_false(stripe_state_written(env->state, 2));
	assert_int_equal(metadata_header(env, 2), META_HEADER_HAS_SOURCE | META_HEADER_FETCHED);
}

/* The WRITTEN bit is durable before the guest write reaches the disk, so
 * right after submitting, the guest's bytes cannot be there yet. */
static void test_track_written(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	unsigned char *data = env->buf + 2 * STRIPE_BYTES;
	memset(data, 0x5c, 4096);
	struct iovec iov = {data, 4096};
	bdev_add_writev(f->ch, stripe_start(1), &iov, 1, 1);
	assert_int_equal(bdev_submit(f->ch), 0);
	read_disk_file(env, stripe_start(1), 8, env->buf);
	assert_true(memcmp(env->buf, data, 4096) != 0);
	struct bdev_completion c;
	wait_by_completion_fd(f->ch, &c, 1);
	assert_int_equal(c.result, 0);

	assert_true(stripe_state_written(env->state, 1));
	assert_int_equal(metadata_header(env, 1),
			 META_HEADER_HAS_SOURCE | META_HEADER_FETCHED | META_HEADER_WRITTEN);
	read_disk_file(env, stripe_start(1), 8, env->buf);
	assert_memory_equal(env->buf, data, 4096);
	assert_false(stripe_state_written(env->state, 0));
	assert_int_equal(metadata_header(env, 0), META_HEADER_HAS_SOURCE);

	/* Written already: the next write does not wait, and reads ignore it. */
	assert_int_equal(lazy_write(f->ch, stripe_start(1) + 8, data, 4096, 2), 0);
	assert_int_equal(lazy_read(f->ch, stripe_start(1), env->buf, 8192, 3), 0);
	assert_memory_equal(env->buf, data, 4096);
	assert_memory_equal(env->buf + 4096, data, 4096);
	assert_int_equal(lazy_flush(f->ch, 4), 0);
}

/* Nothing to fetch, so only the WRITTEN update stands between the write and
 * the disk: the bit must be durable by the time the write has landed. */
static void test_track_written_on_fetched_stripe(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	unsigned char *data = env->buf + 2 * STRIPE_BYTES;
	memset(data, 0x6d, 4096);
	struct iovec iov = {data, 4096};
	bdev_add_writev(f->ch, stripe_start(2), &iov, 1, 1);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c;
	bool landed = false, done = false;
	uint64_t deadline = now_ns() + 10ull * 1000 * 1000 * 1000;
	while (!landed && !done) {
		assert_true(now_ns() < deadline);
		done = bdev_poll(f->ch, &c, 1) == 1;
		read_disk_file(env, stripe_start(2), 8, env->buf);
		landed = memcmp(env->buf, data, 4096) == 0;
	}
	/* Whenever the data is seen on the disk, WRITTEN is already there. */
	assert_true(stripe_state_written(env->state, 2));
	assert_int_equal(metadata_header(env, 2) & META_HEADER_WRITTEN, META_HEADER_WRITTEN);
	if (!done)
		wait_by_completion_fd(f->ch, &c, 1);
	assert_int_equal(c.result, 0);
	assert_int_equal(env->source_reads[2], 0);
	read_disk_file(env, stripe_start(2), 8, env->buf);
	assert_memory_equal(env->buf, data, 4096);
}

/* DISCARD and WRITE_ZEROES change data: the stripe is fetched first, and
 * only the range itself reads as zeroes afterwards. */
static void test_discard_and_write_zeroes_fetch_first(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	bdev_add_discard(f->ch, stripe_start(0) + 8, 16, 1);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c;
	wait_by_completion_fd(f->ch, &c, 1);
	assert_int_equal(c.result, 0);
	bdev_add_write_zeroes(f->ch, stripe_start(3) + 32, 8, false, 2);
	assert_int_equal(bdev_submit(f->ch), 0);
	wait_by_completion_fd(f->ch, &c, 1);
	assert_int_equal(c.result, 0);
	assert_int_equal(stripe_state_fetch(env->state, 0), STRIPE_FETCHED);
	assert_int_equal(stripe_state_fetch(env->state, 3), STRIPE_FETCHED);

	expected_fetched(env, stripe_start(0), STRIPE_SECTORS, f->expect);
	memset(f->expect + 8 * SECTOR_SIZE, 0, 16 * SECTOR_SIZE);
	assert_int_equal(lazy_read(f->ch, stripe_start(0), env->buf, STRIPE_BYTES, 3), 0);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
	expected_fetched(env, stripe_start(3), STRIPE_SECTORS, f->expect);
	memset(f->expect + 32 * SECTOR_SIZE, 0, 8 * SECTOR_SIZE);
	assert_int_equal(lazy_read(f->ch, stripe_start(3), env->buf, STRIPE_BYTES, 4), 0);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
}

/* Past the image end: a read wholly beyond it is zeroes without any I/O, a
 * read across it fetches the stripe (whose tail the fetch zero-fills), and a
 * stripe without source data is read from the disk as it is. */
static void test_short_image(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	assert_int_equal(stripe_state_fetch(env->state, 3), STRIPE_NO_SOURCE);
	memset(env->buf, 0xa5, 8192);
	assert_int_equal(lazy_read(f->ch, stripe_start(2) + 40, env->buf, 8192, 1), 0);
	memset(f->expect, 0, 8192);
	assert_memory_equal(env->buf, f->expect, 8192);
	assert_int_equal(stripe_state_fetch(env->state, 2), STRIPE_NOT_FETCHED);
	assert_int_equal(env->source_reads[2], 0);

	assert_int_equal(lazy_read(f->ch, stripe_start(2) + 24, env->buf, 8192, 2), 0);
	expected_fetched(env, stripe_start(2) + 24, 16, f->expect);
	assert_memory_equal(env->buf, f->expect, 8192);
	assert_int_equal(stripe_state_fetch(env->state, 2), STRIPE_FETCHED);
	read_disk_file(env, stripe_start(2), STRIPE_SECTORS, env->buf);
	expected_fetched(env, stripe_start(2), STRIPE_SECTORS, f->expect);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);

	assert_int_equal(lazy_read(f->ch, stripe_start(3), env->buf, STRIPE_BYTES, 3), 0);
	memset(f->expect, DISK_FILL, STRIPE_BYTES);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
	assert_int_equal(env->source_reads[3], 0);
}

/* Many requests for one unfetched stripe, from one channel, all queued at
 * once: one source read, every request served. */
static void test_requests_waiting_for_one_stripe(void **state)
{
	struct lazy_fixture *f = *state;
	struct lazy_env *env = &f->env;
	struct iovec iov[8];
	for (int i = 0; i < 8; i++) {
		iov[i] = (struct iovec){env->buf + i * 4096, 4096};
		bdev_add_readv(f->ch, stripe_start(1) + (uint64_t)i * 8, &iov[i], 1, (uint64_t)i);
	}
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c[8];
	wait_by_completion_fd(f->ch, c, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(c[i].result, 0);
	expected_fetched(env, stripe_start(1), STRIPE_SECTORS, f->expect);
	assert_memory_equal(env->buf, f->expect, STRIPE_BYTES);
	assert_int_equal(env->source_reads[1], 1);
	assert_false(bdev_busy(f->ch));
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_read_fetches_then_reads_the_disk,
					    setup_copy_on_read, lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_read_fetches_then_reads_the_disk,
					    setup_sync_copy_on_read, lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_single_stripe_read_from_the_image,
					    setup_image_reads, lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_single_stripe_read_from_the_image,
					    setup_sync_image_reads, lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_cross_stripe_read_fetches_both, setup_image_reads,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_cross_stripe_read_fetches_both, setup_copy_on_read,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_write_fetches_first, setup_copy_on_read,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_write_fetches_first, setup_image_reads,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_track_written, setup_track_written,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_track_written, setup_track_written_image,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_track_written_on_fetched_stripe,
					    setup_track_written_fetched, lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_discard_and_write_zeroes_fetch_first,
					    setup_copy_on_read, lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_short_image, setup_short_image,
					    lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_requests_waiting_for_one_stripe,
					    setup_copy_on_read, lazy_fixture_close),
	    cmocka_unit_test_setup_teardown(test_requests_waiting_for_one_stripe,
					    setup_sync_copy_on_read, lazy_fixture_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

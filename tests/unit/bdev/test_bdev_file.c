/* File-backed devices: every test runs once with io_uring and once with the
 * sync engine, on a real file opened with O_DIRECT. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev/bdev.h"
#include "bdev_test_util.h"
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_SECTORS 2048u
#define FILE_SIZE    ((uint64_t)FILE_SECTORS * SECTOR_SIZE)
#define DEPTH	     32u

struct engine_param {
	enum bdev_engine engine;
};

static struct engine_param uring_param = {BDEV_ENGINE_IO_URING};
static struct engine_param sync_param = {BDEV_ENGINE_SYNC};

struct fixture {
	struct bdev_file_options opts;
	char path[TEST_PATH_MAX];
	struct bdev *dev;
	struct bdev_channel *ch;
	unsigned char *buf; /* 1 MiB, aligned */
	unsigned char *check;
};

static void open_device(struct fixture *f, uint32_t channel_depth)
{
	struct error err = {0};
	int rc = bdev_open_file(&f->opts, &f->dev, &err);
	if (rc != 0)
		fail_msg("bdev_open_file: %s", err.text);
	assert_int_equal(bdev_channel_create(f->dev, channel_depth, &f->ch), 0);
}

static void close_device(struct fixture *f)
{
	bdev_channel_destroy(f->ch);
	bdev_close(f->dev);
	f->ch = NULL;
	f->dev = NULL;
}

static int setup(void **state)
{
	const struct engine_param *param = *state;
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	make_test_file(f->path, FILE_SIZE, 0);
	f->opts = (struct bdev_file_options){
	    .path = f->path, .engine = param->engine, .direct = true, .queue_depth = DEPTH};
	f->buf = buffer_alloc(BUFFER_ALIGNMENT, FILE_SIZE);
	f->check = buffer_alloc(BUFFER_ALIGNMENT, FILE_SIZE);
	assert_non_null(f->buf);
	assert_non_null(f->check);
	open_device(f, DEPTH);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close_device(f);
	unlink(f->path);
	buffer_free(f->buf);
	buffer_free(f->check);
	free(f);
	return 0;
}

static void write_pattern(struct fixture *f, uint64_t sector, uint32_t sectors, uint64_t seed)
{
	fill_random(f->buf, (size_t)sectors * SECTOR_SIZE, seed);
	struct iovec iov = {f->buf, (size_t)sectors * SECTOR_SIZE};
	bdev_add_writev(f->ch, sector, &iov, 1, 99);
	assert_int_equal(submit_and_wait(f->ch, 99), 0);
}

static void read_into_check(struct fixture *f, uint64_t sector, uint32_t sectors)
{
	memset(f->check, 0xEE, (size_t)sectors * SECTOR_SIZE);
	struct iovec iov = {f->check, (size_t)sectors * SECTOR_SIZE};
	bdev_add_readv(f->ch, sector, &iov, 1, 98);
	assert_int_equal(submit_and_wait(f->ch, 98), 0);
}

static void assert_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != 0)
			fail_msg("byte %zu is 0x%02x, expected zero", i, p[i]);
}

static void test_open_reports_geometry(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(bdev_sector_count(f->dev), FILE_SECTORS);
	uint32_t align = bdev_buffer_alignment(f->dev);
	assert_true(align >= 4096 && is_power_of_two(align));
	assert_false(bdev_is_read_only(f->dev));
	assert_int_equal(bdev_queue_depth(f->dev), DEPTH);
}

/* Several multi-iovec writes in one batch, read back in one batch with
 * iovecs split differently. */
static void test_vectored_roundtrip(void **state)
{
	struct fixture *f = *state;
	unsigned char *w = f->buf;
	fill_random(w, 96 * SECTOR_SIZE, 7);
	struct iovec wa[3] = {{w, 4096}, {w + 4096, 512}, {w + 4608, 12288}}; /* 33 sectors */
	struct iovec wb[2] = {{w + 16896, 1024}, {w + 17920, 3072}};	      /* 8 sectors */
	struct iovec wc[1] = {{w + 20992, 48 * SECTOR_SIZE}};		      /* to the end */
	bdev_add_writev(f->ch, 7, wa, 3, 1);
	bdev_add_writev(f->ch, 100, wb, 2, 2);
	bdev_add_writev(f->ch, FILE_SECTORS - 48, wc, 1, 3);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion done[3];
	wait_completions(f->ch, done, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(done[i].result, 0);

	unsigned char *r = f->check;
	memset(r, 0xEE, 96 * SECTOR_SIZE);
	struct iovec ra[2] = {{r, 1024}, {r + 1024, 15872}};
	struct iovec rb[4] = {
	    {r + 16896, 512}, {r + 17408, 512}, {r + 17920, 2048}, {r + 19968, 1024}};
	struct iovec rc[3] = {{r + 20992, 8192}, {r + 29184, 0}, {r + 29184, 32 * SECTOR_SIZE}};
	bdev_add_readv(f->ch, 7, ra, 2, 4);
	bdev_add_readv(f->ch, 100, rb, 4, 5);
	bdev_add_readv(f->ch, FILE_SECTORS - 48, rc, 3, 6);
	assert_int_equal(bdev_submit(f->ch), 0);
	wait_completions(f->ch, done, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(done[i].result, 0);
	assert_memory_equal(r, w, 89 * SECTOR_SIZE);

	/* and the bytes are where the offsets say */
	int fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, r, 4096, 7 * SECTOR_SIZE), 4096);
	close(fd);
	assert_memory_equal(r, w, 4096);
}

static void test_flush(void **state)
{
	struct fixture *f = *state;
	write_pattern(f, 0, 8, 1);
	bdev_add_flush(f->ch, 5);
	assert_int_equal(submit_and_wait(f->ch, 5), 0);
}

static void test_discard_reads_zeroes(void **state)
{
	struct fixture *f = *state;
	write_pattern(f, 0, 64, 2);
	memcpy(f->check + FILE_SIZE / 2, f->buf, 64 * SECTOR_SIZE); /* keep the pattern */
	bdev_add_discard(f->ch, 8, 16, 7);
	assert_int_equal(submit_and_wait(f->ch, 7), 0);
	unsigned char *pattern = f->check + FILE_SIZE / 2;
	read_into_check(f, 0, 64);
	assert_memory_equal(f->check, pattern, 8 * SECTOR_SIZE);
	assert_zero(f->check + 8 * SECTOR_SIZE, 16 * SECTOR_SIZE);
	assert_memory_equal(f->check + 24 * SECTOR_SIZE, pattern + 24 * SECTOR_SIZE,
			    40 * SECTOR_SIZE);
}

/* Whether this filesystem implements a fallocate mode (tmpfs and btrfs lack
 * FALLOC_FL_ZERO_RANGE, for instance). */
static bool filesystem_supports(const char *path, int mode)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	int rc = fallocate(fd, mode, 0, SECTOR_SIZE);
	int err = errno;
	close(fd);
	return rc == 0 || err != EOPNOTSUPP;
}

static void test_write_zeroes_reads_zeroes(void **state)
{
	struct fixture *f = *state;
	for (int unmap = 0; unmap <= 1; unmap++) {
		write_pattern(f, 32, 16, 3 + (uint64_t)unmap);
		bdev_add_write_zeroes(f->ch, 36, 8, unmap, 8);
		int rc = submit_and_wait(f->ch, 8);
		if (!unmap && !filesystem_supports(f->path, FALLOC_FL_ZERO_RANGE)) {
			/* the kernel's answer reaches the caller */
			assert_int_equal(rc, -EOPNOTSUPP);
			continue;
		}
		assert_int_equal(rc, 0);
		read_into_check(f, 32, 16);
		assert_memory_equal(f->check, f->buf, 4 * SECTOR_SIZE);
		assert_zero(f->check + 4 * SECTOR_SIZE, 8 * SECTOR_SIZE);
		assert_memory_equal(f->check + 12 * SECTOR_SIZE, f->buf + 12 * SECTOR_SIZE,
				    4 * SECTOR_SIZE);
	}
}

/* The file ends inside the request: the engine continues after the short
 * transfer, gets 0 bytes and reports -EIO, never a silent success. */
static void test_read_past_end_is_eio(void **state)
{
	struct fixture *f = *state;
	struct iovec two = {f->buf, 2 * SECTOR_SIZE};
	struct iovec split[2] = {{f->buf, SECTOR_SIZE}, {f->buf + SECTOR_SIZE, SECTOR_SIZE}};
	bdev_add_readv(f->ch, FILE_SECTORS - 1, &two, 1, 1);
	assert_int_equal(submit_and_wait(f->ch, 1), -EIO);
	bdev_add_readv(f->ch, FILE_SECTORS - 1, split, 2, 2);
	assert_int_equal(submit_and_wait(f->ch, 2), -EIO);
	bdev_add_readv(f->ch, FILE_SECTORS, &two, 1, 3);
	assert_int_equal(submit_and_wait(f->ch, 3), -EIO);
	bdev_add_readv(f->ch, FILE_SECTORS - 2, &two, 1, 4);
	assert_int_equal(submit_and_wait(f->ch, 4), 0);
	assert_false(bdev_busy(f->ch));
}

static void test_zero_length_completes(void **state)
{
	struct fixture *f = *state;
	struct iovec empty = {f->buf, 0};
	bdev_add_readv(f->ch, 0, NULL, 0, 1);
	bdev_add_writev(f->ch, 5, &empty, 1, 2);
	bdev_add_discard(f->ch, 3, 0, 3);
	bdev_add_write_zeroes(f->ch, 3, 0, false, 4);
	bdev_add_readv(f->ch, FILE_SECTORS + 100, &empty, 1, 5); /* past the end: still empty */
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion done[5];
	wait_completions(f->ch, done, 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(done[i].id, (uint64_t)i + 1);
		assert_int_equal(done[i].result, 0);
	}
	assert_false(bdev_busy(f->ch));
}

/* Offsets that do not fit a file offset fail cleanly instead of wrapping. */
static void test_offset_overflow_is_einval(void **state)
{
	struct fixture *f = *state;
	struct iovec iov = {f->buf, SECTOR_SIZE};
	bdev_add_readv(f->ch, UINT64_MAX, &iov, 1, 1);
	bdev_add_writev(f->ch, UINT64_MAX >> 9, &iov, 1, 2);
	bdev_add_discard(f->ch, 0, UINT64_MAX, 3);
	bdev_add_write_zeroes(f->ch, UINT64_MAX - 1, 1, true, 4);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion done[4];
	wait_completions(f->ch, done, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(done[i].result, -EINVAL);
	assert_false(bdev_busy(f->ch));
}

static void test_depth_full_then_eagain(void **state)
{
	struct fixture *f = *state;
	bdev_channel_destroy(f->ch);
	assert_int_equal(bdev_channel_create(f->dev, 4, &f->ch), 0);
	struct iovec iov[5];
	for (int i = 0; i < 5; i++) {
		iov[i] = (struct iovec){f->buf + i * 4096, 4096};
		bdev_add_readv(f->ch, (uint64_t)i * 8, &iov[i], 1, (uint64_t)i);
	}
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion done[5];
	wait_completions(f->ch, done, 5);
	unsigned seen = 0;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(done[i].result, done[i].id == 4 ? -EAGAIN : 0);
		seen |= 1u << done[i].id;
	}
	assert_int_equal(seen, 0x1f);
	assert_false(bdev_busy(f->ch));

	/* once polled, the places are free again */
	for (int i = 0; i < 4; i++)
		bdev_add_readv(f->ch, (uint64_t)i * 8, &iov[i], 1, (uint64_t)i + 10);
	assert_int_equal(bdev_submit(f->ch), 0);
	wait_completions(f->ch, done, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(done[i].result, 0);
}

static void test_busy_until_polled(void **state)
{
	struct fixture *f = *state;
	assert_false(bdev_busy(f->ch));
	struct iovec iov = {f->buf, 4096};
	bdev_add_readv(f->ch, 0, &iov, 1, 1);
	assert_true(bdev_busy(f->ch));
	assert_int_equal(bdev_submit(f->ch), 0);
	assert_true(bdev_busy(f->ch));
	struct bdev_completion c;
	wait_completions(f->ch, &c, 1);
	assert_false(bdev_busy(f->ch));
	assert_int_equal(bdev_poll(f->ch, &c, 1), 0);
	assert_int_equal(bdev_submit(f->ch), 0); /* nothing queued: still fine */
}

static void test_write_through(void **state)
{
	struct fixture *f = *state;
	close_device(f);
	f->opts.write_through = true;
	open_device(f, DEPTH);
	write_pattern(f, 16, 8, 11);
	read_into_check(f, 16, 8);
	assert_memory_equal(f->check, f->buf, 8 * SECTOR_SIZE);
	bdev_add_flush(f->ch, 3);
	assert_int_equal(submit_and_wait(f->ch, 3), 0);
}

/* io_uring completes a write-through flush at once, without the kernel. */
static void test_write_through_flush_is_immediate_on_uring(void **state)
{
	struct fixture *f = *state;
	close_device(f);
	f->opts.write_through = true;
	open_device(f, DEPTH);
	bdev_add_flush(f->ch, 3);
	struct bdev_completion c;
	assert_int_equal(bdev_poll(f->ch, &c, 1), 1);
	assert_int_equal(c.id, 3);
	assert_int_equal(c.result, 0);
	assert_false(bdev_busy(f->ch));
}

static void test_read_only_refuses_writes(void **state)
{
	struct fixture *f = *state;
	write_pattern(f, 0, 8, 5);
	close_device(f);
	f->opts.read_only = true;
	open_device(f, DEPTH);
	assert_true(bdev_is_read_only(f->dev));
	struct iovec iov = {f->check, 8 * SECTOR_SIZE};
	bdev_add_writev(f->ch, 0, &iov, 1, 1);
	bdev_add_discard(f->ch, 0, 8, 2);
	bdev_add_write_zeroes(f->ch, 0, 8, false, 3);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion done[3];
	wait_completions(f->ch, done, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(done[i].result, -EBADF);
	read_into_check(f, 0, 8);
	assert_memory_equal(f->check, f->buf, 8 * SECTOR_SIZE);
	bdev_add_flush(f->ch, 4);
	assert_int_equal(submit_and_wait(f->ch, 4), 0);
}

static void test_channel_depth_defaults_to_queue_depth(void **state)
{
	struct fixture *f = *state;
	bdev_channel_destroy(f->ch);
	assert_int_equal(bdev_channel_create(f->dev, 0, &f->ch), 0);
	struct iovec iov = {f->buf, SECTOR_SIZE};
	for (uint32_t i = 0; i <= DEPTH; i++)
		bdev_add_readv(f->ch, 0, &iov, 1, i);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion done[DEPTH + 1];
	wait_completions(f->ch, done, DEPTH + 1);
	int eagain = 0;
	for (uint32_t i = 0; i <= DEPTH; i++)
		eagain += done[i].result == -EAGAIN;
	assert_int_equal(eagain, 1);
	assert_int_equal(
	    bdev_channel_create(f->dev, BDEV_MAX_DEPTH + 1, &(struct bdev_channel *){NULL}),
	    -EINVAL);
}

/* Two channels of one device have their own descriptors but see one file. */
static void test_channels_share_the_file(void **state)
{
	struct fixture *f = *state;
	struct bdev_channel *other;
	assert_int_equal(bdev_channel_create(f->dev, 8, &other), 0);
	write_pattern(f, 40, 8, 21);
	struct iovec iov = {f->check, 8 * SECTOR_SIZE};
	bdev_add_readv(other, 40, &iov, 1, 1);
	assert_int_equal(submit_and_wait(other, 1), 0);
	assert_memory_equal(f->check, f->buf, 8 * SECTOR_SIZE);
	bdev_channel_destroy(other);
}

/* Keeps the channel full for many rounds of submit and poll: every request
 * completes exactly once and entries are recycled correctly. */
static void test_sustained_full_depth(void **state)
{
	struct fixture *f = *state;
	enum { TOTAL = 3000 };
	static unsigned char seen[TOTAL];
	memset(seen, 0, sizeof(seen));
	struct iovec iov[DEPTH];
	for (uint32_t i = 0; i < DEPTH; i++)
		iov[i] = (struct iovec){f->buf + i * 4096, 4096};
	uint32_t added = 0, completed = 0, in_flight = 0;
	while (completed < TOTAL) {
		while (in_flight < DEPTH && added < TOTAL) {
			uint64_t sector = (added * 7919u) % (FILE_SECTORS - 8);
			if (added % 3)
				bdev_add_readv(f->ch, sector, &iov[added % DEPTH], 1, added);
			else
				bdev_add_writev(f->ch, sector, &iov[added % DEPTH], 1, added);
			added++;
			in_flight++;
		}
		assert_int_equal(bdev_submit(f->ch), 0);
		struct bdev_completion done[DEPTH];
		int n = bdev_poll(f->ch, done, DEPTH);
		if (n == 0)
			wait_completions(f->ch, done, n = 1);
		for (int i = 0; i < n; i++) {
			assert_int_equal(done[i].result, 0);
			assert_true(done[i].id < TOTAL);
			assert_int_equal(seen[done[i].id]++, 0);
		}
		completed += (uint32_t)n;
		in_flight -= (uint32_t)n;
	}
	assert_false(bdev_busy(f->ch));
}

#define ENGINE_TEST(fn, param) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, param)
#define BOTH_ENGINES(fn)       ENGINE_TEST(fn, &uring_param), ENGINE_TEST(fn, &sync_param)

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    BOTH_ENGINES(test_open_reports_geometry),
	    BOTH_ENGINES(test_vectored_roundtrip),
	    BOTH_ENGINES(test_flush),
	    BOTH_ENGINES(test_discard_reads_zeroes),
	    BOTH_ENGINES(test_write_zeroes_reads_zeroes),
	    BOTH_ENGINES(test_read_past_end_is_eio),
	    BOTH_ENGINES(test_zero_length_completes),
	    BOTH_ENGINES(test_offset_overflow_is_einval),
	    BOTH_ENGINES(test_depth_full_then_eagain),
	    BOTH_ENGINES(test_busy_until_polled),
	    BOTH_ENGINES(test_write_through),
	    ENGINE_TEST(test_write_through_flush_is_immediate_on_uring, &uring_param),
	    BOTH_ENGINES(test_read_only_refuses_writes),
	    BOTH_ENGINES(test_channel_depth_defaults_to_queue_depth),
	    BOTH_ENGINES(test_channels_share_the_file),
	    BOTH_ENGINES(test_sustained_full_depth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

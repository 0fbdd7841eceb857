/* ublk requests on a real file (sync engine): what a tag's request does to
 * the device and which result is committed for it. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev/bdev.h"
#include "bdev_test_util.h"
#include "common/common.h"
#include "ublk/ublk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_SECTORS 256u
#define BUF_BYTES    (16u * 1024u)

struct fixture {
	char path[TEST_PATH_MAX];
	struct bdev *dev;
	struct bdev_channel *ch;
	unsigned char *buf;
	struct iovec iov;
	struct ublk_request_limits limits;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	make_test_file(f->path, (uint64_t)FILE_SECTORS * SECTOR_SIZE, 0);
	unsigned char *pattern = malloc(FILE_SECTORS * SECTOR_SIZE);
	assert_non_null(pattern);
	fill_random(pattern, FILE_SECTORS * SECTOR_SIZE, 7);
	int fd = open(f->path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, pattern, FILE_SECTORS * SECTOR_SIZE, 0),
			 FILE_SECTORS * SECTOR_SIZE);
	close(fd);
	free(pattern);

	struct bdev_file_options o = {
	    .path = f->path, .engine = BDEV_ENGINE_SYNC, .direct = true, .queue_depth = 8};
	struct error err = {0};
	if (bdev_open_file(&o, &f->dev, &err) < 0)
		fail_msg("bdev_open_file: %s", err.text);
	assert_int_equal(bdev_channel_create(f->dev, 8, &f->ch), 0);
	f->buf = buffer_alloc(4096, BUF_BYTES);
	assert_non_null(f->buf);
	f->limits = (struct ublk_request_limits){
	    .capacity = FILE_SECTORS, .buf_bytes = BUF_BYTES, .discard = true};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	bdev_channel_destroy(f->ch);
	bdev_close(f->dev);
	buffer_free(f->buf);
	unlink(f->path);
	free(f);
	return 0;
}

/* Starts the request on tag 3 and returns the result committed for it. */
static int32_t run(struct fixture *f, const struct ublk_request *req)
{
	int rc = ublk_request_start(f->ch, req, &f->limits, f->buf, &f->iov, 3);
	if (rc < 0)
		return rc;
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c;
	wait_completions(f->ch, &c, 1);
	assert_int_equal(c.id, 3);
	return ublk_request_result(req, c.result);
}

static void read_file(struct fixture *f, uint64_t offset, void *out, size_t len)
{
	int fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, out, len, (off_t)offset), (ssize_t)len);
	close(fd);
}

static void test_read_lands_in_tag_buffer(void **state)
{
	struct fixture *f = *state;
	struct ublk_request req = {.op = UBLK_WIRE_OP_READ, .sector = 10, .sectors = 8};
	assert_int_equal(run(f, &req), 8 * SECTOR_SIZE);
	unsigned char want[8 * SECTOR_SIZE];
	read_file(f, 10 * SECTOR_SIZE, want, sizeof(want));
	assert_memory_equal(f->buf, want, sizeof(want));
}

static void test_write_comes_from_tag_buffer(void **state)
{
	struct fixture *f = *state;
	memset(f->buf, 0x5a, 4 * SECTOR_SIZE);
	struct ublk_request req = {.op = UBLK_WIRE_OP_WRITE, .sector = 100, .sectors = 4};
	assert_int_equal(run(f, &req), 4 * SECTOR_SIZE);
	unsigned char got[4 * SECTOR_SIZE];
	read_file(f, 100 * SECTOR_SIZE, got, sizeof(got));
	for (size_t i = 0; i < sizeof(got); i++)
		assert_int_equal(got[i], 0x5a);
}

static void test_flush_commits_zero(void **state)
{
	struct fixture *f = *state;
	struct ublk_request req = {.op = UBLK_WIRE_OP_FLUSH};
	assert_int_equal(run(f, &req), 0);
}

static void assert_zeroes(struct fixture *f, uint64_t sector, uint32_t count)
{
	size_t len = (size_t)count * SECTOR_SIZE;
	unsigned char *got = malloc(len);
	assert_non_null(got);
	read_file(f, sector * SECTOR_SIZE, got, len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(got[i], 0);
	free(got);
}

static uint64_t allocated_blocks(struct fixture *f)
{
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	return (uint64_t)st.st_blocks;
}

/* The kernel's UBLK_IO_F_NOUNMAP: WRITE_ZEROES that must keep the space
 * (BLKZEROOUT, fallocate -z) leaves the file allocated; without it the range
 * may become a hole. Both read back as zeroes. */
static void test_write_zeroes_unmap_flag(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(UBLK_WIRE_IO_F_NOUNMAP, 1u << 15);
	uint64_t full = allocated_blocks(f);
	struct ublk_request keep = {.op = UBLK_WIRE_OP_WRITE_ZEROES,
				    .flags = UBLK_WIRE_IO_F_NOUNMAP,
				    .sector = 0,
				    .sectors = 128};
	assert_int_equal(run(f, &keep), 0);
	assert_zeroes(f, 0, 128);
	assert_int_equal(allocated_blocks(f), full);
	struct ublk_request unmap = {.op = UBLK_WIRE_OP_WRITE_ZEROES, .sector = 0, .sectors = 128};
	assert_int_equal(run(f, &unmap), 0);
	assert_zeroes(f, 0, 128);
	assert_true(allocated_blocks(f) < full);
}

static void test_discard_and_write_zeroes_read_back_zeroes(void **state)
{
	struct fixture *f = *state;
	struct ublk_request discard = {.op = UBLK_WIRE_OP_DISCARD, .sector = 16, .sectors = 16};
	assert_int_equal(run(f, &discard), 0);
	assert_zeroes(f, 16, 16);
	struct ublk_request zeroes = {.op = UBLK_WIRE_OP_WRITE_ZEROES,
				      .flags = UBLK_WIRE_IO_F_NOUNMAP,
				      .sector = 64,
				      .sectors = 8};
	assert_int_equal(run(f, &zeroes), 0);
	assert_zeroes(f, 64, 8);
	/* Discard is not bounded by the tag buffer: it carries no data. */
	struct ublk_request large = {.op = UBLK_WIRE_OP_DISCARD, .sector = 0, .sectors = 200};
	assert_int_equal(run(f, &large), 0);
	assert_zeroes(f, 0, 200);
}

/* Refused requests never reach the device: the caller commits the errno. */
static void assert_refused(struct fixture *f, const struct ublk_request *req, int expected)
{
	assert_int_equal(ublk_request_start(f->ch, req, &f->limits, f->buf, &f->iov, 1), expected);
	assert_false(bdev_busy(f->ch));
}

static void test_larger_than_buffer_is_eio(void **state)
{
	struct fixture *f = *state;
	struct ublk_request req = {
	    .op = UBLK_WIRE_OP_READ, .sector = 0, .sectors = BUF_BYTES / SECTOR_SIZE + 1};
	assert_refused(f, &req, -EIO);
	req.op = UBLK_WIRE_OP_WRITE;
	assert_refused(f, &req, -EIO);
	req.sectors = BUF_BYTES / SECTOR_SIZE; /* exactly the buffer: fine */
	assert_int_equal(run(f, &req), (int32_t)BUF_BYTES);
}

static void test_outside_the_disk_is_eio(void **state)
{
	struct fixture *f = *state;
	struct ublk_request req = {
	    .op = UBLK_WIRE_OP_READ, .sector = FILE_SECTORS - 1, .sectors = 2};
	assert_refused(f, &req, -EIO);
	req.sector = UINT64_MAX; /* sector + count wraps */
	assert_refused(f, &req, -EIO);
	struct ublk_request discard = {.op = UBLK_WIRE_OP_DISCARD, .sector = 200, .sectors = 100};
	assert_refused(f, &discard, -EIO);
	struct ublk_request last = {
	    .op = UBLK_WIRE_OP_READ, .sector = FILE_SECTORS - 1, .sectors = 1};
	assert_int_equal(run(f, &last), SECTOR_SIZE);
}

static void test_unsupported_ops(void **state)
{
	struct fixture *f = *state;
	struct ublk_request req = {.op = 4 /* unknown */, .sector = 0, .sectors = 1};
	assert_refused(f, &req, -EOPNOTSUPP);
	req.op = 10; /* a zone op */
	assert_refused(f, &req, -EOPNOTSUPP);
	f->limits.discard = false; /* not advertised */
	req.op = UBLK_WIRE_OP_DISCARD;
	assert_refused(f, &req, -EOPNOTSUPP);
	req.op = UBLK_WIRE_OP_WRITE_ZEROES;
	assert_refused(f, &req, -EOPNOTSUPP);
}

static void test_results(void **state)
{
	(void)state;
	struct ublk_request read = {.op = UBLK_WIRE_OP_READ, .sectors = 8};
	assert_int_equal(ublk_request_result(&read, 0), 4096);
	assert_int_equal(ublk_request_result(&read, -EIO), -EIO);
	/* A failed stripe is a plain I/O error for the kernel. */
	assert_int_equal(ublk_request_result(&read, BDEV_ERR_STRIPE_FAILED), -EIO);
	struct ublk_request write = {.op = UBLK_WIRE_OP_WRITE, .sectors = 1};
	assert_int_equal(ublk_request_result(&write, 0), 512);
	assert_int_equal(ublk_request_result(&write, -ENOSPC), -ENOSPC);
	struct ublk_request flush = {.op = UBLK_WIRE_OP_FLUSH};
	assert_int_equal(ublk_request_result(&flush, 0), 0);
	assert_int_equal(ublk_request_result(&flush, -EIO), -EIO);
	struct ublk_request discard = {.op = UBLK_WIRE_OP_DISCARD, .sectors = 64};
	assert_int_equal(ublk_request_result(&discard, 0), 0);
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_read_lands_in_tag_buffer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_comes_from_tag_buffer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flush_commits_zero, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_discard_and_write_zeroes_read_back_zeroes, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_write_zeroes_unmap_flag, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_larger_than_buffer_is_eio, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outside_the_disk_is_eio, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsupported_ops, setup, teardown),
	    cmocka_unit_test(test_results),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

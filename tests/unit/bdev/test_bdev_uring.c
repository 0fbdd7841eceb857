/* io_uring specifics: the completion eventfd, continuing short transfers,
 * and tearing a channel down with requests in flight. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev/bdev.h"
#include "uring_submit_faults.h"
#include "bdev_test_util.h"
#include "common/common.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_SECTORS 64u

struct fixture {
	char path[TEST_PATH_MAX];
	struct bdev *dev;
	struct bdev_channel *ch;
	unsigned char *buf;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	make_test_file(f->path, FILE_SECTORS * SECTOR_SIZE, 0x5A);
	struct bdev_file_options o = {
	    .path = f->path, .engine = BDEV_ENGINE_IO_URING, .direct = true, .queue_depth = 16};
	struct error err = {0};
	assert_int_equal(bdev_open_file(&o, &f->dev, &err), 0);
	assert_int_equal(bdev_channel_create(f->dev, 16, &f->ch), 0);
	f->buf = buffer_alloc(BUFFER_ALIGNMENT, 64 * 1024);
	assert_non_null(f->buf);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	bdev_channel_destroy(f->ch);
	bdev_close(f->dev);
	unlink(f->path);
	buffer_free(f->buf);
	free(f);
	return 0;
}

static bool readable_within(int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN);
}

static void test_completion_fd_readable_after_submit(void **state)
{
	struct fixture *f = *state;
	int fd = bdev_completion_fd(f->ch);
	assert_true(fd >= 0);
	assert_false(readable_within(fd, 0));
	struct iovec iov = {f->buf, 4096};
	bdev_add_readv(f->ch, 0, &iov, 1, 1);
	assert_int_equal(bdev_submit(f->ch), 0);
	assert_true(readable_within(fd, 2000));
	uint64_t counter;
	assert_int_equal(read(fd, &counter, sizeof(counter)), (ssize_t)sizeof(counter));
	assert_true(counter >= 1);
	struct bdev_completion c;
	assert_int_equal(bdev_poll(f->ch, &c, 1), 1);
	assert_int_equal(c.id, 1);
	assert_int_equal(c.result, 0);
	assert_false(bdev_busy(f->ch));
}

/* A read crossing end of file transfers the part before it; if the file has
 * grown by the time the short completion is polled, the continuation reads
 * the rest and the request succeeds. Covers both continuation shapes: the
 * rest of a partly read iovec, and the caller's following iovecs. */
static void test_short_read_is_continued(void **state)
{
	struct fixture *f = *state;
	unsigned char *one = f->buf, *three = f->buf + 8192;
	memset(f->buf, 0xEE, 16384);
	struct iovec single = {one, 2 * SECTOR_SIZE};
	struct iovec split[3] = {{three, SECTOR_SIZE},
				 {three + SECTOR_SIZE, SECTOR_SIZE},
				 {three + 2 * SECTOR_SIZE, SECTOR_SIZE}};
	/* One at a time: a signal means at least one new CQE, not one each. */
	int fd = bdev_completion_fd(f->ch);
	uint64_t counter;
	bdev_add_readv(f->ch, FILE_SECTORS - 1, &single, 1, 1);
	assert_int_equal(bdev_submit(f->ch), 0);
	assert_true(readable_within(fd, 2000));
	assert_int_equal(read(fd, &counter, sizeof(counter)), (ssize_t)sizeof(counter));
	bdev_add_readv(f->ch, FILE_SECTORS - 1, split, 3, 2);
	assert_int_equal(bdev_submit(f->ch), 0);
	assert_true(readable_within(fd, 2000));
	assert_int_equal(read(fd, &counter, sizeof(counter)), (ssize_t)sizeof(counter));

	/* both short completions wait in the CQ: now the file grows */
	assert_int_equal(truncate(f->path, (FILE_SECTORS + 8) * SECTOR_SIZE), 0);

	struct bdev_completion done[2];
	wait_completions(f->ch, done, 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(done[i].result, 0);
	for (size_t i = 0; i < SECTOR_SIZE; i++) {
		assert_int_equal(one[i], 0x5A);
		assert_int_equal(one[SECTOR_SIZE + i], 0);
		assert_int_equal(three[i], 0x5A);
		assert_int_equal(three[SECTOR_SIZE + i], 0);
		assert_int_equal(three[2 * SECTOR_SIZE + i], 0);
	}
	assert_false(bdev_busy(f->ch));
}

/* A submit the kernel refuses for now (EAGAIN, EBUSY) leaves the operation
 * queued: the completion fd stays quiet, so the channel must say that a
 * submit is still owed until one goes through. */
static void test_busy_kernel_leaves_a_submit_owed(void **state)
{
	struct fixture *f = *state;
	int fd = bdev_completion_fd(f->ch);
	struct iovec iov = {f->buf, 4096};
	assert_false(bdev_needs_submit(f->ch));
	__atomic_store_n(&bdev_uring_fail_submits, 2, __ATOMIC_RELAXED);
	bdev_add_readv(f->ch, 0, &iov, 1, 7);
	assert_true(bdev_needs_submit(f->ch)); /* queued, not yet handed over */
	assert_int_equal(bdev_submit(f->ch), 0);
	assert_true(bdev_needs_submit(f->ch));
	assert_true(bdev_busy(f->ch));
	/* Sleeping on the fd now would never end. */
	assert_false(readable_within(fd, 100));
	struct bdev_completion c;
	assert_int_equal(bdev_poll(f->ch, &c, 1), 0); /* retries, refused again */
	assert_true(bdev_needs_submit(f->ch));
	assert_false(readable_within(fd, 100));
	assert_int_equal(bdev_poll(f->ch, &c, 1), 0); /* retried and taken this time */
	assert_false(bdev_needs_submit(f->ch));
	assert_true(readable_within(fd, 2000));
	wait_completions(f->ch, &c, 1);
	assert_int_equal(c.id, 7);
	assert_int_equal(c.result, 0);
	assert_false(bdev_busy(f->ch));
	assert_int_equal(__atomic_load_n(&bdev_uring_fail_submits, __ATOMIC_RELAXED), 0);
}

/* Destroying a channel with requests in the kernel waits for them, so the
 * buffers they point at may be freed right after. */
static void test_destroy_with_requests_in_flight(void **state)
{
	struct fixture *f = *state;
	struct iovec iov[16];
	for (int i = 0; i < 16; i++) {
		iov[i] = (struct iovec){f->buf + i * 4096, 4096};
		if (i % 2)
			bdev_add_readv(f->ch, (uint64_t)i * 4 % FILE_SECTORS, &iov[i], 1,
				       (uint64_t)i);
		else
			bdev_add_writev(f->ch, (uint64_t)i * 4 % FILE_SECTORS, &iov[i], 1,
					(uint64_t)i);
	}
	assert_int_equal(bdev_submit(f->ch), 0);
	bdev_channel_destroy(f->ch);
	/* some queued but never submitted */
	assert_int_equal(bdev_channel_create(f->dev, 16, &f->ch), 0);
	bdev_add_readv(f->ch, 0, &iov[0], 1, 1);
	bdev_add_flush(f->ch, 2);
	assert_int_equal(bdev_submit(f->ch), 0);
	bdev_add_readv(f->ch, 8, &iov[1], 1, 3);
	bdev_channel_destroy(f->ch);
	assert_int_equal(bdev_channel_create(f->dev, 16, &f->ch), 0);
}

static void test_sync_and_null_have_no_completion_fd(void **state)
{
	struct fixture *f = *state;
	struct bdev_file_options o = {.path = f->path, .engine = BDEV_ENGINE_SYNC, .direct = true};
	struct bdev *dev;
	struct bdev_channel *ch;
	assert_int_equal(bdev_open_file(&o, &dev, NULL), 0);
	assert_int_equal(bdev_channel_create(dev, 4, &ch), 0);
	assert_int_equal(bdev_completion_fd(ch), -1);
	bdev_channel_destroy(ch);
	bdev_close(dev);
	assert_int_equal(bdev_open_null(8, &dev), 0);
	assert_int_equal(bdev_channel_create(dev, 4, &ch), 0);
	assert_int_equal(bdev_completion_fd(ch), -1);
	bdev_channel_destroy(ch);
	bdev_close(dev);
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_completion_fd_readable_after_submit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_short_read_is_continued, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_busy_kernel_leaves_a_submit_owed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_with_requests_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_and_null_have_no_completion_fd, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

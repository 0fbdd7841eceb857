/* The null engine: completes everything, touches nothing. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev/bdev.h"
#include "bdev_test_util.h"
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static void test_open_null_geometry(void **state)
{
	struct bdev *dev;
	assert_int_equal(bdev_open_null(1000, &dev), 0);
	assert_int_equal(bdev_sector_count(dev), 1000);
	assert_int_equal(bdev_buffer_alignment(dev), BUFFER_ALIGNMENT);
	assert_false(bdev_is_read_only(dev));
	struct bdev_channel *ch;
	assert_int_equal(bdev_channel_create(dev, 0, &ch), -EINVAL); /* no default depth */
	assert_int_equal(bdev_channel_create(dev, 8, &ch), 0);
	assert_int_equal(bdev_completion_fd(ch), -1);
	bdev_channel_destroy(ch);
	bdev_close(dev);
}

static void test_every_op_succeeds_without_touching_buffers(void **state)
{
	struct bdev *dev;
	struct bdev_channel *ch;
	assert_int_equal(bdev_open_null(100, &dev), 0);
	assert_int_equal(bdev_channel_create(dev, 8, &ch), 0);
	unsigned char buf[4096], copy[4096];
	memset(buf, 0xAB, sizeof(buf));
	memcpy(copy, buf, sizeof(buf));
	struct iovec iov[2] = {{buf, 1000}, {buf + 1000, 3096}}; /* unaligned is fine */
	assert_false(bdev_busy(ch));
	bdev_add_readv(ch, 0, iov, 2, 1);
	bdev_add_writev(ch, 10, iov, 2, 2);
	bdev_add_flush(ch, 3);
	bdev_add_discard(ch, 0, 100, 4);
	bdev_add_write_zeroes(ch, 5, 5, true, 5);
	bdev_add_readv(ch, 1000000, iov, 1, 6); /* capacity is the front end's job */
	assert_true(bdev_busy(ch));
	assert_int_equal(bdev_submit(ch), 0);
	struct bdev_completion done[8];
	assert_int_equal(bdev_poll(ch, done, 4), 4);
	assert_true(bdev_busy(ch));
	assert_int_equal(bdev_poll(ch, done + 4, 4), 2);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(done[i].id, (uint64_t)i + 1);
		assert_int_equal(done[i].result, 0);
	}
	assert_false(bdev_busy(ch));
	assert_memory_equal(buf, copy, sizeof(buf));
	bdev_channel_destroy(ch);
	bdev_close(dev);
}

/* Far more adds than depth without polling: every one completes, in order,
 * none dropped. */
static void test_beyond_depth_nothing_dropped(void **state)
{
	struct bdev *dev;
	struct bdev_channel *ch;
	assert_int_equal(bdev_open_null(100, &dev), 0);
	assert_int_equal(bdev_channel_create(dev, 4, &ch), 0);
	for (uint64_t id = 0; id < 100; id++)
		bdev_add_flush(ch, id);
	struct bdev_completion done[128];
	assert_int_equal(bdev_poll(ch, done, 128), 100);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(done[i].id, (uint64_t)i);
		assert_int_equal(done[i].result, i < 4 ? 0 : -EAGAIN);
	}
	assert_false(bdev_busy(ch));
	for (uint64_t id = 0; id < 4; id++)
		bdev_add_flush(ch, id);
	assert_int_equal(bdev_poll(ch, done, 128), 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(done[i].result, 0);
	bdev_channel_destroy(ch);
	bdev_close(dev);
}

/* BDEV_ENGINE_NULL through bdev_open_file: sized like the file, which is
 * never written. */
static void test_null_engine_on_file(void **state)
{
	char path[TEST_PATH_MAX];
	make_test_file(path, 65536, 0x11);
	struct bdev_file_options o = {.path = path, .engine = BDEV_ENGINE_NULL, .direct = true};
	struct bdev *dev;
	struct error err = {0};
	assert_int_equal(bdev_open_file(&o, &dev, &err), 0);
	assert_int_equal(bdev_sector_count(dev), 128);
	struct bdev_channel *ch;
	assert_int_equal(bdev_channel_create(dev, 4, &ch), 0);
	unsigned char buf[4096];
	memset(buf, 0x22, sizeof(buf));
	struct iovec iov = {buf, sizeof(buf)};
	bdev_add_writev(ch, 0, &iov, 1, 1);
	bdev_add_discard(ch, 8, 8, 2);
	assert_int_equal(bdev_submit(ch), 0);
	struct bdev_completion done[2];
	assert_int_equal(bdev_poll(ch, done, 2), 2);
	assert_int_equal(done[0].result, 0);
	assert_int_equal(done[1].result, 0);
	bdev_channel_destroy(ch);
	bdev_close(dev);

	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	unsigned char content[8192], expected[8192];
	memset(expected, 0x11, sizeof(expected));
	assert_int_equal(pread(fd, content, sizeof(content), 0), (ssize_t)sizeof(content));
	assert_memory_equal(content, expected, sizeof(content));
	close(fd);
	unlink(path);
}

static void test_read_only_null_refuses_writes(void **state)
{
	char path[TEST_PATH_MAX];
	make_test_file(path, 4096, 0);
	struct bdev_file_options o = {.path = path, .engine = BDEV_ENGINE_NULL, .read_only = true};
	struct bdev *dev;
	struct bdev_channel *ch;
	assert_int_equal(bdev_open_file(&o, &dev, NULL), 0);
	assert_int_equal(bdev_channel_create(dev, 4, &ch), 0);
	unsigned char buf[512];
	struct iovec iov = {buf, sizeof(buf)};
	bdev_add_writev(ch, 0, &iov, 1, 1);
	bdev_add_readv(ch, 0, &iov, 1, 2);
	struct bdev_completion done[2];
	assert_int_equal(bdev_poll(ch, done, 2), 2);
	assert_int_equal(done[0].result, -EBADF);
	assert_int_equal(done[1].result, 0);
	bdev_channel_destroy(ch);
	bdev_close(dev);
	unlink(path);
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_null_geometry),
	    cmocka_unit_test(test_every_op_succeeds_without_touching_buffers),
	    cmocka_unit_test(test_beyond_depth_nothing_dropped),
	    cmocka_unit_test(test_null_engine_on_file),
	    cmocka_unit_test(test_read_only_null_refuses_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

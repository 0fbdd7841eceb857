/* bdev_open_file's checks and the one-line errors it gives. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev/bdev.h"
#include "bdev_test_util.h"
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct bdev_file_options options(const char *path, enum bdev_engine engine)
{
	return (struct bdev_file_options){
	    .path = path, .engine = engine, .direct = true, .queue_depth = 16};
}

static void assert_err_contains(const char *err, const char *expected)
{
	if (!strstr(err, expected))
		fail_msg("error \"%s\" lacks \"%s\"", err, expected);
	assert_null(strchr(err, '\n'));
}

static void test_size_not_multiple_of_sector(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	make_test_file(path, 1000, 1);
	const enum bdev_engine engines[] = {BDEV_ENGINE_IO_URING, BDEV_ENGINE_SYNC,
					    BDEV_ENGINE_NULL};
	for (size_t i = 0; i < ARRAY_SIZE(engines); i++) {
		struct bdev_file_options o = options(path, engines[i]);
		struct bdev *dev = NULL;
		assert_int_equal(bdev_open_file(&o, &dev, &err), -EINVAL);
		assert_null(dev);
		char expected[TEST_PATH_MAX + 64];
		snprintf(expected, sizeof(expected), "%s: size 1000 is not a multiple of 512",
			 path);
		assert_string_equal(err.text, expected);
	}
	unlink(path);
}

static void test_missing_file(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	missing_test_path(path);
	struct bdev_file_options o = options(path, BDEV_ENGINE_IO_URING);
	struct bdev *dev = NULL;
	assert_int_equal(bdev_open_file(&o, &dev, &err), -ENOENT);
	assert_err_contains(err.text, path);
	assert_err_contains(err.text, "No such file or directory");
	/* never created: O_CREAT is never used */
	struct stat st;
	assert_int_equal(stat(path, &st), -1);
	/* err may be NULL */
	assert_int_equal(bdev_open_file(&o, &dev, NULL), -ENOENT);
}

static void test_uring_depth_must_be_power_of_two(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	make_test_file(path, 4096, 0);
	const uint32_t bad[] = {0, 3, 48, BDEV_MAX_DEPTH * 2};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct bdev_file_options o = options(path, BDEV_ENGINE_IO_URING);
		o.queue_depth = bad[i];
		struct bdev *dev = NULL;
		assert_int_equal(bdev_open_file(&o, &dev, &err), -EINVAL);
		assert_err_contains(err.text, "not a power of two");
	}
	/* other engines do not use it at open */
	struct bdev_file_options o = options(path, BDEV_ENGINE_SYNC);
	o.queue_depth = 3;
	struct bdev *dev = NULL;
	assert_int_equal(bdev_open_file(&o, &dev, &err), 0);
	bdev_close(dev);
	unlink(path);
}

static void test_directory_rejected(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	make_test_file(path, 0, 0);
	unlink(path);
	assert_int_equal(mkdir(path, 0700), 0);
	struct bdev_file_options o = options(path, BDEV_ENGINE_SYNC);
	struct bdev *dev = NULL;
	assert_int_equal(bdev_open_file(&o, &dev, &err), -EINVAL);
	assert_err_contains(err.text, "not a regular file or block device");
	rmdir(path);
	o.path = "/dev/null"; /* a character device */
	assert_int_equal(bdev_open_file(&o, &dev, &err), -EINVAL);
	assert_err_contains(err.text, "/dev/null: not a regular file or block device");
}

static void test_no_path(void **state)
{
	struct error err = {0};
	struct bdev_file_options o = options(NULL, BDEV_ENGINE_SYNC);
	struct bdev *dev = NULL;
	assert_int_equal(bdev_open_file(&o, &dev, &err), -EINVAL);
	assert_err_contains(err.text, "path");
}

static void test_empty_file_has_no_sectors(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	make_test_file(path, 0, 0);
	struct bdev_file_options o = options(path, BDEV_ENGINE_IO_URING);
	struct bdev *dev = NULL;
	assert_int_equal(bdev_open_file(&o, &dev, &err), 0);
	assert_int_equal(bdev_sector_count(dev), 0);
	bdev_close(dev);
	unlink(path);
}

/* The scratch folder is a real filesystem that punches holes (ext4, xfs,
 * tmpfs); a read-only device never offers discard; the null device always
 * does (it does nothing). The probe must not change the file. */
static void test_supports_discard(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	make_test_file(path, 64 * 1024, 0xab);
	struct bdev_file_options o = options(path, BDEV_ENGINE_SYNC);
	struct bdev *dev = NULL;
	assert_int_equal(bdev_open_file(&o, &dev, &err), 0);
	assert_true(bdev_supports_discard(dev));
	bdev_close(dev);

	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 64 * 1024);
	unsigned char buf[512];
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), 64 * 1024 - 512), 512);
	close(fd);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0xab);

	o.read_only = true;
	assert_int_equal(bdev_open_file(&o, &dev, &err), 0);
	assert_false(bdev_supports_discard(dev));
	bdev_close(dev);
	unlink(path);

	assert_int_equal(bdev_open_null(8, &dev), 0);
	assert_true(bdev_supports_discard(dev));
	bdev_close(dev);
}

static void test_iov_direct_alignment(void **state)
{
	static _Alignas(4096) char buf[8192];
	struct iovec ok[2] = {{buf, 512}, {buf + 1024, 4096}};
	assert_true(bdev_iov_is_direct_aligned(ok, 2));
	assert_true(bdev_iov_is_direct_aligned(NULL, 0));
	struct iovec bad_len[2] = {{buf, 512}, {buf + 1024, 100}};
	assert_false(bdev_iov_is_direct_aligned(bad_len, 2));
	struct iovec bad_base[2] = {{buf + 8, 512}, {buf + 1024, 512}};
	assert_false(bdev_iov_is_direct_aligned(bad_base, 2));
	struct iovec bad_second_base[2] = {{buf, 512}, {buf + 1030, 512}};
	assert_false(bdev_iov_is_direct_aligned(bad_second_base, 2));
}

static bool file_is_filled(const char *path, uint64_t size, unsigned char fill)
{
	struct stat st;
	if (stat(path, &st) < 0 || (uint64_t)st.st_size != size)
		return false;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	unsigned char buf[4096];
	bool same = true;
	for (uint64_t off = 0; same && off < size; off += sizeof(buf)) {
		assert_int_equal(pread(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
		for (size_t i = 0; i < sizeof(buf); i++)
			same = same && buf[i] == fill;
	}
	close(fd);
	return same;
}

/* Channels are made long after the device is opened (a front end that
 * reconnects): by then the path may name another file. A channel must reach
 * the file the device opened, renamed or not, and leave the newcomer alone:
 * the device's size, reads and writes all describe one file. */
static void test_channels_keep_the_opened_file(void **state)
{
	const enum bdev_engine engines[] = {BDEV_ENGINE_IO_URING, BDEV_ENGINE_SYNC};
	for (size_t e = 0; e < ARRAY_SIZE(engines); e++) {
		char path[TEST_PATH_MAX], moved[TEST_PATH_MAX + 8];
		struct error err = {0};
		make_test_file(path, 64 * 1024, 0xab);
		struct bdev_file_options o = options(path, engines[e]);
		struct bdev *dev = NULL;
		assert_int_equal(bdev_open_file(&o, &dev, &err), 0);

		/* Rename the file and put a bigger one under its name. */
		snprintf(moved, sizeof(moved), "%s.moved", path);
		assert_int_equal(rename(path, moved), 0);
		int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 1024 * 1024), 0);
		close(fd);

		struct bdev_channel *ch = NULL;
		assert_int_equal(bdev_channel_create(dev, 4, &ch), 0);
		unsigned char *buf = buffer_alloc(4096, 4096);
		assert_non_null(buf);
		struct iovec iov = {buf, 4096};
		bdev_add_readv(ch, 120, &iov, 1, 1); /* the last 4 KiB of the original */
		assert_int_equal(submit_and_wait(ch, 1), 0);
		for (size_t i = 0; i < 4096; i++)
			assert_int_equal(buf[i], 0xab);
		memset(buf, 0xcd, 4096);
		bdev_add_writev(ch, 0, &iov, 1, 2);
		assert_int_equal(submit_and_wait(ch, 2), 0);
		bdev_add_flush(ch, 3);
		assert_int_equal(submit_and_wait(ch, 3), 0);
		bdev_channel_destroy(ch);

		/* Removed altogether: still served. */
		assert_int_equal(unlink(moved), 0);
		assert_int_equal(bdev_channel_create(dev, 4, &ch), 0);
		memset(buf, 0, 4096);
		bdev_add_readv(ch, 0, &iov, 1, 4);
		assert_int_equal(submit_and_wait(ch, 4), 0);
		for (size_t i = 0; i < 4096; i++)
			assert_int_equal(buf[i], 0xcd);
		bdev_channel_destroy(ch);
		buffer_free(buf);
		assert_int_equal(bdev_sector_count(dev), 128);
		bdev_close(dev);

		assert_true(file_is_filled(path, 1024 * 1024, 0));
		unlink(path);
	}
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_size_not_multiple_of_sector),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_uring_depth_must_be_power_of_two),
	    cmocka_unit_test(test_directory_rejected),
	    cmocka_unit_test(test_no_path),
	    cmocka_unit_test(test_empty_file_has_no_sectors),
	    cmocka_unit_test(test_iov_direct_alignment),
	    cmocka_unit_test(test_supports_discard),
	    cmocka_unit_test(test_channels_keep_the_opened_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

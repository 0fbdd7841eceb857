#include "meta_test_util.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void meta_test_file(char path[TEST_PATH_MAX], const void *data, size_t len)
{
	snprintf(path, TEST_PATH_MAX, "%s/meta-test-XXXXXX", test_scratch_dir());
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	if (data)
		assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
	else
		assert_int_equal(ftruncate(fd, (off_t)len), 0);
	close(fd);
}

struct bdev *meta_test_open(const char *path, enum bdev_engine engine, bool read_only)
{
	struct bdev_file_options opts = {.path = path,
					 .engine = engine,
					 .read_only = read_only,
					 .direct = true,
					 .queue_depth = 4};
	struct error err = {0};
	struct bdev *dev = NULL;
	int rc = bdev_open_file(&opts, &dev, &err);
	if (rc < 0)
		fail_msg("cannot open %s: %s", path, err.text);
	return dev;
}

uint8_t *meta_test_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

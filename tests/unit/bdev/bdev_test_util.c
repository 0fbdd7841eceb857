#include "bdev_test_util.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_TIMEOUT_MS 5000

/* O_DIRECT fails on some filesystems (tmpfs on older kernels), so a TMPDIR
 * that cannot take it falls back to the build directory meson passes in. */
static bool takes_direct_io(const char *dir)
{
	char path[TEST_PATH_MAX];
	snprintf(path, sizeof(path), "%s/bdev-probe-XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0)
		return false;
	close(fd);
	fd = open(path, O_RDWR | O_DIRECT);
	unlink(path);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

const char *test_scratch_dir(void)
{
	static const char *dir;
	if (dir)
		return dir;
	const char *candidates[] = {getenv("TMPDIR"), getenv("BDEV_TEST_DIR")};
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		if (candidates[i] && candidates[i][0] && takes_direct_io(candidates[i])) {
			dir = candidates[i];
			return dir;
		}
	}
	fail_msg("no scratch directory taking O_DIRECT (set TMPDIR or BDEV_TEST_DIR)");
	return NULL;
}

void make_test_file(char *path, uint64_t size, int fill)
{
	snprintf(path, TEST_PATH_MAX, "%s/bdev-test-XXXXXX", test_scratch_dir());
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	char chunk[65536];
	memset(chunk, fill, sizeof(chunk));
	for (uint64_t done = 0; done < size;) {
		size_t n = size - done < sizeof(chunk) ? (size_t)(size - done) : sizeof(chunk);
		assert_int_equal(pwrite(fd, chunk, n, (off_t)done), (ssize_t)n);
		done += n;
	}
	close(fd);
}

void missing_test_path(char *path)
{
	snprintf(path, TEST_PATH_MAX, "%s/bdev-missing-%d", test_scratch_dir(), (int)getpid());
	unlink(path);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wait_completions(struct bdev_channel *ch, struct bdev_completion *out, int count)
{
	int64_t deadline = now_ms() + WAIT_TIMEOUT_MS;
	int got = 0;
	while (got < count) {
		got += bdev_poll(ch, out + got, count - got);
		if (got >= count)
			break;
		assert_true(bdev_busy(ch));
		assert_true(now_ms() < deadline);
		int fd = bdev_completion_fd(ch);
		if (fd >= 0) {
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			if (poll(&pfd, 1, 100) == 1) {
				uint64_t counter;
				assert_int_equal(read(fd, &counter, sizeof(counter)),
						 (ssize_t)sizeof(counter));
			}
		}
	}
}

int submit_and_wait(struct bdev_channel *ch, uint64_t id)
{
	struct bdev_completion c;
	assert_int_equal(bdev_submit(ch), 0);
	wait_completions(ch, &c, 1);
	assert_int_equal(c.id, id);
	return c.result;
}

void fill_random(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	unsigned char *p = buf;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x;
	}
}

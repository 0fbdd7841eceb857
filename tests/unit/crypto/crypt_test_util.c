#include "crypt_test_util.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "crypto/crypto.h"
#include "xts_reference.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLEEP_LIMIT_MS 5000

const uint8_t test_key1[32] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x01, 0x23, 0x45,
			       0x67, 0x89, 0xab, 0xcd, 0xef, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a,
			       0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0};
const uint8_t test_key2[32] = {0xaa, 0x55, 0x11, 0xee, 0x22, 0xdd, 0x33, 0xcc, 0x44, 0xbb, 0x66,
			       0x99, 0x77, 0x88, 0x00, 0xff, 0x13, 0x57, 0x9b, 0xdf, 0x24, 0x68,
			       0xac, 0xe0, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};

struct bdev *open_test_file(const char *path, enum bdev_engine engine, bool direct, bool read_only,
			    uint32_t depth)
{
	struct bdev_file_options o = {.path = path,
				      .engine = engine,
				      .read_only = read_only,
				      .direct = direct,
				      .queue_depth = depth};
	struct bdev *dev;
	struct error err = {0};
	int rc = bdev_open_file(&o, &dev, &err);
	if (rc < 0)
		fail_msg("%s", err.text);
	return dev;
}

struct bdev *open_test_crypt(struct bdev *lower)
{
	struct bdev *dev;
	struct error err = {0};
	int rc = crypt_bdev_open(lower, test_key1, test_key2, &dev, &err);
	if (rc < 0)
		fail_msg("%s", err.text);
	assert_int_equal(bdev_sector_count(dev), bdev_sector_count(lower));
	assert_int_equal(bdev_is_read_only(dev), bdev_is_read_only(lower));
	return dev;
}

void wait_strictly(struct bdev_channel *ch, struct bdev_completion *out, int count)
{
	int got = 0;
	while (got < count) {
		got += bdev_poll(ch, out + got, count - got);
		if (got >= count)
			break;
		assert_true(bdev_busy(ch));
		if (bdev_needs_submit(ch)) {
			bdev_submit(ch);
			continue;
		}
		int fd = bdev_completion_fd(ch);
		if (fd < 0)
			continue;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int n = poll(&pfd, 1, SLEEP_LIMIT_MS);
		if (n != 1)
			fail_msg("slept %d ms on the completion fd with %d of %d completions",
				 SLEEP_LIMIT_MS, got, count);
		/* An eventfd is drained; the lazy device's epoll fd cannot be
		 * read (EINVAL): its channel drains what it gathers itself. */
		uint64_t counter;
		if (read(fd, &counter, sizeof(counter)) < 0)
			assert_true(errno == EINVAL || errno == EAGAIN);
	}
}

int do_rw(struct bdev_channel *ch, bool write, uint64_t sector, const struct iovec *iov, int iovcnt,
	  uint64_t id)
{
	if (write)
		bdev_add_writev(ch, sector, iov, iovcnt, id);
	else
		bdev_add_readv(ch, sector, iov, iovcnt, id);
	assert_int_equal(bdev_submit(ch), 0);
	struct bdev_completion c;
	wait_strictly(ch, &c, 1);
	assert_int_equal(c.id, id);
	return c.result;
}

int do_one(struct bdev_channel *ch, bool write, uint64_t sector, void *buf, size_t bytes)
{
	struct iovec iov = {.iov_base = buf, .iov_len = bytes};
	return do_rw(ch, write, sector, &iov, 1, 77);
}

void read_raw(const char *path, uint64_t sector, uint64_t count, uint8_t *out)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	size_t bytes = count * SECTOR_SIZE;
	assert_int_equal(pread(fd, out, bytes, (off_t)(sector * SECTOR_SIZE)), (ssize_t)bytes);
	close(fd);
}

void assert_file_encrypts(const char *path, uint64_t sector, uint64_t count, const uint8_t *plain)
{
	size_t bytes = count * SECTOR_SIZE;
	uint8_t *raw = malloc(bytes), *want = malloc(bytes);
	assert_non_null(raw);
	assert_non_null(want);
	read_raw(path, sector, count, raw);
	assert_int_equal(
	    ref_xts(test_key1, test_key2, true, REF_TWEAK_UBIBLK, sector, plain, want, count), 0);
	for (uint64_t s = 0; s < count; s++)
		if (memcmp(raw + s * SECTOR_SIZE, want + s * SECTOR_SIZE, SECTOR_SIZE) != 0)
			fail_msg("sector %llu of %s is not the reference's ciphertext",
				 (unsigned long long)(sector + s), path);
	free(raw);
	free(want);
}

bool crypt_test_engine_usable(void)
{
	const char *problem = xts_engine_problem();
	if (problem) {
		printf("not run: %s\n", problem);
		return false;
	}
	printf("XTS engine: %s\n", xts_engine_chosen());
	return true;
}

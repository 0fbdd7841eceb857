/* Helpers shared by the crypt layer tests: test keys, devices over scratch
 * files, single requests waited for strictly on the completion fd, and the
 * file's raw bytes compared with the independent reference. */
#ifndef UBIBLK_TEST_CRYPT_UTIL_H
#define UBIBLK_TEST_CRYPT_UTIL_H

#include "bdev/bdev.h"
#include "bdev_test_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* meson runs the crypt layer tests once per XTS engine, forced with
 * UBIBLK_XTS_ENGINE. false (after saying why on stdout) when this machine
 * cannot run the forced one: main() then exits 77, which meson and
 * scripts/test.sh report as skipped, not passed. */
#define TEST_EXIT_SKIP 77
bool crypt_test_engine_usable(void);

extern const uint8_t test_key1[32];
extern const uint8_t test_key2[32];

struct bdev *open_test_file(const char *path, enum bdev_engine engine, bool direct, bool read_only,
			    uint32_t depth);
/* The crypt layer over `lower` with the test keys. */
struct bdev *open_test_crypt(struct bdev *lower);

/* Polls until `count` completions arrived. It sleeps only on the completion
 * fd, and only when nothing is owed a submit: a sleep that lasts 5 s fails
 * the test (a completion that never signals the fd). Engines without an fd
 * are polled. */
void wait_strictly(struct bdev_channel *ch, struct bdev_completion *out, int count);
/* One request, submitted and waited for; returns its result. */
int do_rw(struct bdev_channel *ch, bool write, uint64_t sector, const struct iovec *iov, int iovcnt,
	  uint64_t id);
int do_one(struct bdev_channel *ch, bool write, uint64_t sector, void *buf, size_t bytes);

/* The file's bytes, bypassing every layer. */
void read_raw(const char *path, uint64_t sector, uint64_t count, uint8_t *out);
/* Asserts the file holds exactly `plain` encrypted by the reference at
 * [sector, sector + count). */
void assert_file_encrypts(const char *path, uint64_t sector, uint64_t count, const uint8_t *plain);

#endif

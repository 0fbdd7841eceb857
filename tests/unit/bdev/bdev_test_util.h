/* Helpers shared by the bdev unit tests: scratch files on a filesystem that
 * takes O_DIRECT, and waiting for completions. */
#ifndef UBIBLK_TEST_BDEV_UTIL_H
#define UBIBLK_TEST_BDEV_UTIL_H

#include "bdev/bdev.h"

#include <stddef.h>
#include <stdint.h>

#define TEST_PATH_MAX 4096

/* The scratch directory: TMPDIR when it takes O_DIRECT, else BDEV_TEST_DIR
 * (the build folder meson passes in). Fails the test when neither does. */
const char *test_scratch_dir(void);
/* Creates a file of `size` bytes, every byte `fill`, in the scratch
 * directory; its path goes to `path` (TEST_PATH_MAX bytes). */
void make_test_file(char *path, uint64_t size, int fill);
/* A path in the scratch directory that does not exist. */
void missing_test_path(char *path);

/* Waits (at most a few seconds) for `count` completions, in arrival order. */
void wait_completions(struct bdev_channel *ch, struct bdev_completion *out, int count);
/* Submits, then waits for one completion and returns its result, checking
 * that it is the one with `id`. */
int submit_and_wait(struct bdev_channel *ch, uint64_t id);

/* Deterministic pseudo-random bytes. */
void fill_random(void *buf, size_t len, uint64_t seed);

#endif

/* Scratch files for the metadata tests: on a filesystem that takes O_DIRECT
 * (TMPDIR if it does, else the build folder meson passes in BDEV_TEST_DIR). */
#ifndef META_TEST_UTIL_H
#define META_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "../bdev/bdev_test_util.h" /* TEST_PATH_MAX, test_scratch_dir */

/* Creates a new file holding `len` bytes of `data` (zeros when data is NULL). */
void meta_test_file(char path[TEST_PATH_MAX], const void *data, size_t len);
/* Opens `path` as a device with `engine`; fails the test on error. */
struct bdev *meta_test_open(const char *path, enum bdev_engine engine, bool read_only);
/* Reads the whole file into a new buffer (free()); its size in *len. */
uint8_t *meta_test_read_file(const char *path, size_t *len);

#endif

/* A whole lazy stack for the tests: a disk file filled with DISK_FILL, a raw
 * image of random bytes, a metadata file saved for them, the shared stripe
 * state, a real fetch worker (its source wrapped in the flaky source, which
 * also counts the source's reads) and the lazy device on top. */
#ifndef UBIBLK_TEST_LAZY_UTIL_H
#define UBIBLK_TEST_LAZY_UTIL_H

#include "bdev/bdev.h"
#include "bdev_test_util.h"
#include "fetch/fetch.h"
#include "meta/meta.h"

#include <stdbool.h>
#include <stdint.h>

#define DISK_FILL	  0xEE
#define TEST_SHIFT	  6u /* 64-sector (32 KiB) stripes */
#define TEST_STRIPES	  4u
#define MAX_TEST_STRIPES  16u
#define STRIPE_SECTORS	  (1u << TEST_SHIFT)
#define STRIPE_BYTES	  (STRIPE_SECTORS * 512u)
#define TEST_DISK_SECTORS ((uint64_t)TEST_STRIPES * STRIPE_SECTORS)

struct lazy_setup {
	bool copy_on_read; /* false: the lazy device gets the image */
	bool track_written;
	bool no_worker; /* lazy device without a worker */
	bool autofetch;
	enum bdev_engine engine; /* disk and image engine (0: io_uring) */
	uint64_t image_sectors;	 /* 0: as large as the disk */
	uint64_t state_sectors;	 /* disk size the stripe state is built for; 0: the disk's */
	uint64_t fail_stripe;	 /* 0 means none (use FAIL_STRIPE(n) for stripe n) */
	uint32_t fail_times;
	uint8_t preset[MAX_TEST_STRIPES]; /* extra header bits saved in the metadata */
};
#define FAIL_STRIPE(n) ((uint64_t)(n) + 1)

struct lazy_env {
	char disk_path[TEST_PATH_MAX];
	char image_path[TEST_PATH_MAX];
	char meta_path[TEST_PATH_MAX];
	struct bdev *disk, *image, *meta, *lazy;
	struct stripe_state *state;
	struct fetch_worker *worker;
	unsigned char *image_data; /* image content, image_sectors * 512 bytes */
	uint64_t image_sectors;
	uint32_t source_reads[MAX_TEST_STRIPES]; /* source read requests per stripe */
	unsigned char *buf;			 /* 4 stripes, aligned */
};

void lazy_env_open(struct lazy_env *env, const struct lazy_setup *setup);
void lazy_env_close(struct lazy_env *env);

/* The cmocka fixture of the read/write and wake-up tests: an environment, one
 * lazy channel of depth 16 and room for 4 stripes of expected data. */
struct lazy_fixture {
	struct lazy_env env;
	struct bdev_channel *ch;
	unsigned char *expect;
};

int lazy_fixture_open(void **state, const struct lazy_setup *setup);
int lazy_fixture_close(void **state);

/* Expected content of disk sectors [sector, sector + count) once fetched:
 * the image's bytes, zero past the image end. */
void expected_fetched(const struct lazy_env *env, uint64_t sector, uint64_t count,
		      unsigned char *out);
/* Reads the disk file (or metadata file) directly, bypassing every layer. */
void read_disk_file(const struct lazy_env *env, uint64_t sector, uint64_t count,
		    unsigned char *out);
uint8_t metadata_header(const struct lazy_env *env, uint64_t stripe);
/* True when every byte of disk sectors [sector, sector + count) is DISK_FILL. */
bool disk_untouched(const struct lazy_env *env, uint64_t sector, uint64_t count);

/* One request on `ch`, submitted and waited for; returns its result. */
int lazy_read(struct bdev_channel *ch, uint64_t sector, void *buf, uint64_t bytes, uint64_t id);
int lazy_write(struct bdev_channel *ch, uint64_t sector, const void *buf, uint64_t bytes,
	       uint64_t id);
int lazy_flush(struct bdev_channel *ch, uint64_t id);
/* Polls until `count` completions arrived, sleeping only on the completion
 * fd (each sleep must end with the fd readable within a few seconds: a
 * wake-up that never comes fails the test). Returns how many sleeps it took. */
int wait_by_completion_fd(struct bdev_channel *ch, struct bdev_completion *out, int count);

#endif

/* A fetch worker over real files for the unit tests: a disk (zeros or a
 * fill byte), a raw image of pseudo-random bytes, a metadata file saved with
 * meta_save, and the flaky source counting requests per stripe. */
#ifndef UBIBLK_TEST_FETCH_UTIL_H
#define UBIBLK_TEST_FETCH_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "bdev_test_util.h"
#include "common/common.h"
#include "fetch/fetch.h"
#include "fetch_testing.h"
#include "meta/meta.h"

#define TEST_WAIT_MS 20000

struct fixture_options {
	uint64_t disk_sectors;
	uint64_t image_sectors;
	uint8_t shift;
	bool autofetch;
	enum bdev_engine engine;
	int disk_fill;		 /* byte the disk file starts with */
	bool disk_read_only;	 /* fetch writes fail */
	bool metadata_read_only; /* metadata updates fail */
	uint64_t fail_stripe;	 /* FLAKY_NO_STRIPE: none */
	uint32_t fail_times;
	uint8_t extra_header_bits; /* ORed into every disk stripe's header */
};

struct fixture {
	struct fixture_options opts;
	char disk_path[TEST_PATH_MAX];
	char image_path[TEST_PATH_MAX];
	char meta_path[TEST_PATH_MAX];
	uint64_t image_bytes;
	uint8_t *image_data;
	uint32_t *request_counts; /* per image stripe */
	uint64_t image_stripes;
	uint64_t disk_stripes;
	struct bdev *disk;
	struct bdev *image;
	struct bdev *metadata;
	struct stripe_state *state;
	struct fetch_worker *worker;
	int notify_fd; /* subscribed eventfd */
};

/* Defaults: 2 MiB disk, 1 MiB image, shift 6, io_uring, no failures. */
struct fixture_options fixture_defaults(void);
/* Creates the files, opens the devices, builds the state. */
void fixture_files(struct fixture *fx, const struct fixture_options *opts);
/* The source fixture_start would use (flaky over raw, counting). */
struct stripe_source *fixture_source(struct fixture *fx);
/* fixture_files + a started worker (asserted) subscribed to notify_fd. */
void fixture_start(struct fixture *fx, const struct fixture_options *opts);
/* Stops the worker (if any), closes and removes everything. */
void fixture_teardown(struct fixture *fx);

/* Waits, on the notification eventfd, until pred(fx, arg) holds; fails the
 * test after TEST_WAIT_MS. */
void wait_until(struct fixture *fx, bool (*pred)(struct fixture *fx, uint64_t arg), uint64_t arg);
bool stripe_is_fetched(struct fixture *fx, uint64_t stripe);
bool stripe_is_failed(struct fixture *fx, uint64_t stripe);
bool stripe_is_written(struct fixture *fx, uint64_t stripe);
bool all_source_stripes_fetched(struct fixture *fx, uint64_t unused);
bool source_dropped(struct fixture *fx, uint64_t unused);

/* Header byte of a stripe as the metadata file holds it now. */
uint8_t file_header(const struct fixture *fx, uint64_t stripe);
/* Reads `len` bytes of the disk file at `offset` (buffered). */
void read_disk(const struct fixture *fx, uint64_t offset, void *buf, size_t len);
/* Asserts the disk holds the image's data for the stripe, zero beyond the
 * image end within the disk's part of the stripe. */
void assert_stripe_copied(const struct fixture *fx, uint64_t stripe);
uint32_t total_requests(const struct fixture *fx);

#endif

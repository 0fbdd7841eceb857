/* The disk the archive tool reads: its plaintext (through the crypt layer
 * when the config has encryption_key), its metadata, and the stripe source
 * for the stripes that still live only there. Everything is opened
 * read-only; nothing about the disk changes. */
#ifndef UBIBLK_BIN_ARCHIVE_INPUT_H
#define UBIBLK_BIN_ARCHIVE_INPUT_H

#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "common/common.h"
#include "config/config.h"
#include "fetch/fetch.h"
#include "meta/meta.h"

/* Where an archived stripe's plaintext comes from. */
enum archive_origin {
	ARCHIVE_ORIGIN_NONE = 0, /* not archived: it holds no data, reads as zeros */
	ARCHIVE_ORIGIN_DISK,	 /* the local disk */
	ARCHIVE_ORIGIN_SOURCE,	 /* the stripe source: it was never fetched */
};

/* A stripe with data on the disk (WRITTEN, or fetched from its source) is
 * read from the disk, one whose source was not fetched from the source.
 * A stripe without a source holds data only when it was written; a disk
 * running with track_written false never records that, so there every
 * such stripe is archived (from the disk) - the all-zero ones share one
 * object. */
enum archive_origin archive_stripe_origin(uint8_t header, bool track_written);

struct archive_input {
	struct bdev *disk;	/* plaintext, read-only */
	struct bdev *disk_file; /* under disk's crypt layer, or NULL */
	struct metadata meta;
	bool track_written;
	uint64_t disk_sectors;
	uint32_t stripe_sectors;
	uint64_t stripe_count; /* ceil(disk_sectors / stripe_sectors) */
	/* NULL when no archived stripe comes from it; not opened (the
	 * pipeline drives it from its thread). */
	struct stripe_source *source;
	struct bdev *source_image; /* what a raw source borrows, or NULL */
};

/* Opens the disk (depth: reads in flight), loads the metadata and, when a
 * stripe needs it, builds the stripe source of the config. One line in err
 * on failure, with nothing left open. */
int archive_input_open(const struct device_config *cfg, uint32_t depth, struct archive_input *in,
		       struct error *err);
enum archive_origin archive_input_origin(const struct archive_input *in, uint64_t stripe);
void archive_input_close(struct archive_input *in);

#endif

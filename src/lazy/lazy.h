/* The lazy block device: a disk whose stripes may not have been copied from
 * the stripe source yet. It is a struct bdev (a stacked device, see
 * bdev_layer_open), so a front end uses it like a file device.
 *
 * Per channel (one per front-end thread):
 * - reads and writes of stripes the disk already holds (fetched, or without
 *   source data) go straight to the disk;
 * - a read inside one unfetched stripe goes to the raw image when one is
 *   given (copy_on_read false): no fetch, the disk is untouched; past the
 *   image end it reads zeroes;
 * - any other access to an unfetched stripe asks the fetch worker for it and
 *   waits in the channel's FIFO until the stripe is fetched; writes (and
 *   discard / write-zeroes) with track_written also wait until the stripe's
 *   WRITTEN bit is durable in the metadata file;
 * - a request touching a stripe the worker gave up on (Failed) completes
 *   with BDEV_ERR_STRIPE_FAILED (bdev.h); one past the end of the disk or of
 *   the metadata's stripes, or needing a worker that is gone, with -EIO; a
 *   flush goes straight to the disk.
 *
 * The channel's completion fd is woken by the disk, the image and the fetch
 * worker, so a front end sleeping on it notices when queued requests can
 * proceed. Queued requests are issued from bdev_poll(). With an image whose
 * channel has its own eventfd, the completion fd is an epoll fd gathering
 * both: reading it fails harmlessly (EINVAL), and the channel empties what it
 * gathers itself whenever a bdev_poll() finds nothing. */
#ifndef UBIBLK_LAZY_H
#define UBIBLK_LAZY_H

#include <stdbool.h>

#include "bdev/bdev.h"
#include "fetch/fetch.h"
#include "meta/meta.h"

struct lazy_options {
	/* The disk (crypt-wrapped when encrypted). The lazy device has its size,
	 * read-only flag, alignment and queue depth. */
	struct bdev *base;
	/* The raw image (plaintext) to serve single-stripe reads of unfetched
	 * stripes from: only with copy_on_read false and a raw source; NULL
	 * otherwise. */
	struct bdev *image;
	struct stripe_state *state;
	/* NULL: no worker; every request that needs a fetch or a WRITTEN update
	 * fails with -EIO. The worker must outlive the lazy device's channels
	 * (each channel subscribes an eventfd to it until it is destroyed). */
	struct fetch_worker *worker;
	bool track_written;
};

/* All of base, image, state and worker are borrowed and must outlive the
 * device; free the device with bdev_close(). Returns 0, -EINVAL (no base or
 * no state) or -ENOMEM. A state with fewer stripes than the disk needs is
 * accepted with a warning: requests past its stripes fail with -EIO. */
int lazy_bdev_open(const struct lazy_options *opts, struct bdev **out);

#endif

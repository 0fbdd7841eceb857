/* The ublk front end: serves a block device (the back-end stack) to the
 * kernel's ublk driver, which shows it as /dev/ublkbN. See docs/ublk.md.
 *
 * Straight on the kernel interface with liburing (no libublksrv):
 *
 *   main thread   /dev/ublk-control commands: ADD_DEV, SET_PARAMS,
 *                 START_DEV, and at the end STOP_DEV and DEL_DEV
 *   queue thread  one per hardware queue, each with its own io_uring and
 *                 its own device channel: FETCH_REQ for every tag, then
 *                 COMMIT_AND_FETCH_REQ with each request's result
 *
 * Requests are served from the tag's buffer directly (reads land in it,
 * writes are issued from it): no copy in user space. Every request is
 * committed, failures with a negative errno, so no tag is ever lost. */
#ifndef UBIBLK_UBLK_H
#define UBIBLK_UBLK_H

#include <stddef.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "io_tracker/io_tracker.h"

struct ublk_options {
	uint32_t num_queues;	   /* the kernel may give fewer (one per CPU at most) */
	uint32_t queue_depth;	   /* tags per queue, 1..4096 */
	uint32_t max_io_buf_bytes; /* largest request; a multiple of the page size */
	/* A symlink to /dev/ublkbN made once the device is up and removed at
	 * exit; NULL for none. */
	const char *device_symlink;
	/* num_queues trackers (each may be NULL), or NULL: what the RPC
	 * `queues` and `stats` commands report. Slot = tag. */
	struct io_tracker *const *trackers;
	/* NULL, or called once on the calling thread when /dev/ublkbN is
	 * started (and the symlink made), with the device's path. */
	void (*ready)(void *arg, const char *block_path);
	void *ready_arg;
};

/* Checks the values ublk needs beyond the config's own rules; err names the
 * config field. */
int ublk_check_options(const struct ublk_options *opts, struct error *err);

/* The open /dev/ublk-control. Opened before the device stack is built so
 * that a host without the driver is told so at once. */
struct ublk_control;

/* Returns 0, or -errno with err saying why (-ENOENT: no driver, with the
 * modprobe hint; -EACCES: not allowed to use it). */
int ublk_control_open(struct ublk_control **out, struct error *err);
void ublk_control_close(struct ublk_control *ctrl);

/* Adds the device, serves `dev` until ublk_request_stop() is called or the
 * device is deleted from outside, then stops and deletes it (and removes the
 * symlink). Returns 0 after such a stop, or -errno after a failure (the
 * device is deleted then too). A failure to bring the device up is explained
 * in err; a queue that fails while serving logs why when it happens, and
 * only its errno comes back. `dev` must outlive the call. */
int ublk_serve(struct ublk_control *ctrl, const struct ublk_options *opts, struct bdev *dev,
	       struct error *err);

/* Async-signal-safe: makes ublk_serve stop (also when called before it
 * started: it then stops as soon as the device is up, or before). */
void ublk_request_stop(void);

#endif

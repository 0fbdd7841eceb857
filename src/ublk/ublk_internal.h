/* Pieces of the ublk front end, shared between its files only. */
#ifndef UBIBLK_UBLK_INTERNAL_H
#define UBIBLK_UBLK_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "io_tracker/io_tracker.h"
#include "ublk/ublk.h"
#include "ublk/ublk_wire.h"

/* ---- control commands (ublk_control.c) ---- */

struct ublk_control {
	int fd;		      /* /dev/ublk-control */
	struct io_uring ring; /* 128-byte SQEs: control payloads are 32 bytes */
	uint64_t last_id;     /* user_data of the last command issued */
};

/* One control command, waited for. `buf`/`len` is the command's buffer (may
 * be NULL/0), data0 its data[0]. The ioctl-encoded opcode goes first; a
 * kernel that refuses it gets the legacy one. Returns the result (>= 0) or
 * -errno. */
int ublk_control_command(struct ublk_control *ctrl, enum ublk_wire_ctrl_nr nr, uint32_t dev_id,
			 uint64_t data0, void *buf, uint16_t len);

/* ---- requests (ublk_request.c) ---- */

/* One request as the queue hands it to the device. */
struct ublk_request {
	uint8_t op;	/* enum ublk_wire_io_op */
	uint32_t flags; /* op_flags without the op */
	uint64_t sector;
	uint32_t sectors;
};

/* What the queue checks requests against. */
struct ublk_request_limits {
	uint64_t capacity;  /* sectors */
	uint32_t buf_bytes; /* a tag's buffer */
	bool discard;	    /* DISCARD and WRITE_ZEROES were advertised */
};

/* Checks a request and queues it on the channel with id `tag`, its data in
 * buf (iov: the tag's iovec, kept until the completion). Returns 0 when
 * queued, or the negative errno to commit at once: -EIO for a range outside
 * the disk or larger than the buffer, -EOPNOTSUPP for an op not offered. */
int ublk_request_start(struct bdev_channel *ch, const struct ublk_request *req,
		       const struct ublk_request_limits *limits, void *buf, struct iovec *iov,
		       uint16_t tag);
/* The COMMIT result for a device completion: the byte count of a read or
 * write, 0 for the rest, or the device's negative errno (-EIO for
 * BDEV_ERR_STRIPE_FAILED). */
int32_t ublk_request_result(const struct ublk_request *req, int device_result);

/* ---- one queue (ublk_queue.c) ---- */

struct ublk_queue_config {
	uint16_t q_id;
	uint16_t depth;
	struct ublk_request_limits limits; /* buf_bytes: each tag's buffer */
	bool ioctl_encode;		   /* the device takes ioctl-encoded I/O opcodes */
	int char_fd;			   /* /dev/ublkcN, shared: the kernel allows one open */
	/* An eventfd the main thread writes to make every queue thread end
	 * once its device operations are done, even if the kernel still
	 * holds its commands (start-up aborted before START_DEV). */
	int quit_fd;
	struct bdev *dev;
	struct io_tracker *tracker; /* may be NULL */
};

enum ublk_queue_phase {
	UBLK_QUEUE_STARTING = 0,
	UBLK_QUEUE_READY,  /* every tag fetched: START_DEV may go */
	UBLK_QUEUE_FAILED, /* set-up failed; the thread has ended */
};

/* The thread's state as the main thread sees it. */
struct ublk_queue_thread {
	struct ublk_queue_config cfg;
	pthread_t thread;
	pid_t tid;		     /* for sched_setaffinity; set before the phase changes */
	enum ublk_queue_phase phase; /* under the shared lock */
	int exit_result;	     /* 0 after the kernel ended the queue, else -errno */
	/* Shared with every queue and the main thread: phase changes and exits
	 * are announced here. */
	pthread_mutex_t *lock;
	pthread_cond_t *changed;
	int exit_fd; /* eventfd written when the thread ends */
};

/* Thread body: sets the queue up, reports READY or FAILED, then serves until
 * the kernel aborts the queue's commands (device stopped or deleted). */
void *ublk_queue_thread_main(void *arg);

/* ---- --device-symlink (ublk_symlink.c) ---- */

/* Makes parent folders, replaces whatever is at path, links it to target.
 * Failures are logged as warnings only. */
void ublk_symlink_create(const char *path, const char *target);
/* Removes path if it is a symlink; warns if it is something else. */
void ublk_symlink_remove(const char *path);

#endif

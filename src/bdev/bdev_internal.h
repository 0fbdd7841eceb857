/* What bdev.c shares with the engines: the device and channel structures and
 * the small ops table each engine fills in.
 *
 * bdev.c does everything common to the engines before an operation reaches
 * one: byte-range overflow checks, refusing writes on a read-only device,
 * depth admission, and completing zero-length operations. An engine therefore
 * only sees admitted, non-empty operations with valid byte offsets. */
#ifndef UBIBLK_BDEV_INTERNAL_H
#define UBIBLK_BDEV_INTERNAL_H

#include "bdev/bdev.h"
#include "bdev/completion_fifo.h"

#include <stddef.h>

struct bdev_engine_ops {
	int (*channel_create)(struct bdev *dev, uint32_t depth, struct bdev_channel **out);
	void (*channel_destroy)(struct bdev_channel *ch);
	void (*add_rw)(struct bdev_channel *ch, bool write, uint64_t offset,
		       const struct iovec *iov, int iovcnt, uint64_t id);
	void (*add_flush)(struct bdev_channel *ch, uint64_t id);
	/* mode: FALLOC_FL_* flags, as for fallocate(2). */
	void (*add_fallocate)(struct bdev_channel *ch, int mode, uint64_t offset, uint64_t len,
			      uint64_t id);
	/* NULL when the engine has nothing to submit or reap (it completes
	 * everything through the channel's fifo). */
	int (*submit)(struct bdev_channel *ch);
	int (*poll)(struct bdev_channel *ch, struct bdev_completion *out, int max);
	/* NULL when completions never come from the kernel (the fd is -1). */
	int (*completion_fd)(const struct bdev_channel *ch);
	/* NULL when the engine never leaves operations unsubmitted. */
	bool (*needs_submit)(const struct bdev_channel *ch);
	/* bdev_close() calls it before freeing the device; NULL: nothing. */
	void (*device_close)(struct bdev *dev);
};

struct bdev {
	const struct bdev_engine_ops *ops;
	char *path; /* NULL for bdev_open_null; names the file in messages only */
	/* The file as opened by bdev_open_file, which channels reopen; -1 for
	 * the null device, layers and the null engine. */
	int file_fd;
	enum bdev_engine engine;
	bool read_only;
	bool direct;
	bool write_through;
	bool supports_discard;
	uint32_t queue_depth;
	uint32_t alignment;
	uint64_t sectors;
};

/* The first member of every engine's channel. */
struct bdev_channel {
	const struct bdev_engine_ops *ops;
	const struct bdev *dev;
	uint32_t depth;
	/* Admitted operations whose completion bdev_poll() has not returned yet. */
	uint32_t outstanding;
	/* Completions produced without the kernel, returned first by bdev_poll(). */
	struct completion_fifo done;
};

extern const struct bdev_engine_ops bdev_uring_ops;
extern const struct bdev_engine_ops bdev_sync_ops;
extern const struct bdev_engine_ops bdev_null_ops;

int bdev_channel_init(struct bdev_channel *ch, const struct bdev *dev, uint32_t depth);
void bdev_channel_fini(struct bdev_channel *ch);

/* An admitted operation finished without the kernel; bdev_poll() returns it
 * and then releases its place in the depth. */
static inline void bdev_channel_complete(struct bdev_channel *ch, uint64_t id, int result)
{
	completion_fifo_push(&ch->done, id, result, true);
}

/* A new file descriptor for a channel's I/O, with the flags from the device
 * options, on the file the device opened (never the path again). Returns the
 * fd or -errno. */
int bdev_open_channel_fd(const struct bdev *dev);

/* io_uring_submit for the io_uring engine's submits (engine_uring.c): the
 * one place where unit tests make the kernel refuse work (-EAGAIN), by
 * linking their own definition over this weak one. */
struct io_uring;
int bdev_uring_enter(struct io_uring *ring);

#endif

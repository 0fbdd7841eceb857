/* Block devices and per-thread channels.
 *
 * A `struct bdev` describes a device (a file opened with an engine, or the
 * null device). It is immutable after open and may be shared by threads.
 * Each thread doing I/O creates its own `struct bdev_channel`: its own file
 * descriptor and, for io_uring, its own ring. Channels are single-threaded.
 *
 * Usage: queue operations with bdev_add_*, call bdev_submit() once per batch,
 * then bdev_poll() for completions. Offsets and lengths are in 512-byte
 * sectors; iovec buffers and the iovec arrays themselves must stay valid until
 * the operation's completion has been returned by bdev_poll(). With O_DIRECT,
 * every iovec base and length must be a multiple of 512 (the caller bounces
 * otherwise; see bdev_iov_is_direct_aligned).
 *
 * Short transfers are continued by the engine; a completion's result is 0
 * only when every byte was transferred, else a negative errno (-EIO when the
 * file ended early). Adding never fails synchronously: a failure to queue is
 * reported as a failed completion by the next bdev_poll(). */
#ifndef UBIBLK_BDEV_H
#define UBIBLK_BDEV_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/common.h" /* struct error */

enum bdev_engine { BDEV_ENGINE_IO_URING = 0, BDEV_ENGINE_SYNC, BDEV_ENGINE_NULL };

/* Largest channel depth (the kernel's io_uring ring limit). */
#define BDEV_MAX_DEPTH 32768u

struct bdev_file_options {
	const char *path;
	enum bdev_engine engine;
	bool read_only;
	bool direct;	      /* O_DIRECT (always on in production) */
	bool write_through;   /* O_SYNC; with io_uring a flush then completes at once */
	uint32_t queue_depth; /* io_uring ring entries; power of two */
};

struct bdev;
struct bdev_channel;

struct bdev_completion {
	uint64_t id;
	int result; /* 0 or negative errno */
};

/* The result of an operation on a stripe the fetch worker gave up on (the
 * lazy device, lazy.h): the data is not available. Front ends return it to
 * the guest as an ordinary I/O error and count it apart (docs/metrics.md,
 * errors of kind failed_stripe). No file engine produces it. */
#define BDEV_ERR_STRIPE_FAILED (-ENODATA)

/* Opens the file: it must exist and its size must be a multiple of 512
 * (regular files and block devices). The device keeps its descriptor until
 * bdev_close, and every channel does I/O on that same file even after the
 * path is renamed, replaced or removed. Returns 0 or -errno; on error err
 * (may be NULL) says why in one line. */
int bdev_open_file(const struct bdev_file_options *opts, struct bdev **out, struct error *err);
/* A device with `sectors` sectors that completes everything at once without
 * storage: reads leave buffers untouched (like fio's null engine and qemu's
 * null-co with read-zeroes=off); writes, flushes and discards do nothing.
 * A measuring tool. bdev_open_file with BDEV_ENGINE_NULL gives the same
 * device sized like the file, without ever touching it. */
int bdev_open_null(uint64_t sectors, struct bdev **out);
void bdev_close(struct bdev *dev);

uint64_t bdev_sector_count(const struct bdev *dev);
/* Alignment bounce buffers should use for this device: max(4096, fs block size). */
uint32_t bdev_buffer_alignment(const struct bdev *dev);
bool bdev_is_read_only(const struct bdev *dev);
/* Whether discard and write-zeroes can work: the file's filesystem punches
 * holes (probed once at open, past the end of the file so nothing changes),
 * or the block device zeroes ranges. Front ends advertise the two operations
 * only when this is true. Layers report their lower device's answer. */
bool bdev_supports_discard(const struct bdev *dev);
/* The queue_depth given at open (0 for bdev_open_null). */
uint32_t bdev_queue_depth(const struct bdev *dev);

/* depth: maximum operations in flight on this channel (ring size for io_uring);
 * 0 means the device's queue_depth. An operation counts from bdev_add_* until
 * bdev_poll() returns its completion; one added beyond depth completes with
 * -EAGAIN. At most BDEV_MAX_DEPTH. */
int bdev_channel_create(struct bdev *dev, uint32_t depth, struct bdev_channel **out);
/* Waits for operations already handed to the kernel, so no buffer is touched
 * after it returns; their completions are dropped. */
void bdev_channel_destroy(struct bdev_channel *ch);

void bdev_add_readv(struct bdev_channel *ch, uint64_t sector, const struct iovec *iov, int iovcnt,
		    uint64_t id);
void bdev_add_writev(struct bdev_channel *ch, uint64_t sector, const struct iovec *iov, int iovcnt,
		     uint64_t id);
void bdev_add_flush(struct bdev_channel *ch, uint64_t id);
/* Deallocate (punch a hole); reads of the range return zeroes afterwards. */
void bdev_add_discard(struct bdev_channel *ch, uint64_t sector, uint64_t count, uint64_t id);
/* Make the range read as zeroes; `unmap` allows freeing the space. */
void bdev_add_write_zeroes(struct bdev_channel *ch, uint64_t sector, uint64_t count, bool unmap,
			   uint64_t id);

/* Hand queued operations to the engine. Returns 0 or -errno. Operations the
 * kernel could not take stay queued and are retried by the next bdev_submit()
 * or bdev_poll(): each still completes exactly once through bdev_poll(), so
 * the caller must not fail them itself. */
int bdev_submit(struct bdev_channel *ch);
/* Non-blocking: copy up to `max` completions into out; returns how many. */
int bdev_poll(struct bdev_channel *ch, struct bdev_completion *out, int max);
/* True while anything is queued, in flight, or completed but not yet polled. */
bool bdev_busy(const struct bdev_channel *ch);
/* True when operations are queued that the kernel has not taken yet: added
 * but not submitted, or refused for now (io_uring_enter returned EAGAIN,
 * EBUSY or EINTR, perhaps while bdev_poll() continued a short transfer).
 * Nothing will signal the completion fd for them: the caller must keep
 * calling bdev_submit() or bdev_poll() instead of sleeping on it until this
 * turns false. */
bool bdev_needs_submit(const struct bdev_channel *ch);
/* An fd that becomes readable when completions may be waiting (for poll(2)
 * or epoll); -1 for engines that complete inside bdev_add_* (then bdev_busy
 * alone says whether to poll again). Reading it is the caller's job.
 * Completions made without the kernel (a flush under write_through, a
 * rejected operation) do not signal it: drain bdev_poll() after bdev_submit()
 * before sleeping on the fd. */
int bdev_completion_fd(const struct bdev_channel *ch);

/* True when every iovec meets O_DIRECT alignment (512-byte base and length). */
bool bdev_iov_is_direct_aligned(const struct iovec *iov, int iovcnt);

/* ---- stacked devices ----
 * A layer is a device built on other devices: the lazy device (fetch on first
 * touch) and the crypt layer sit between a front end and a file device. The
 * front end cannot tell: it uses the bdev_channel_* / bdev_add_* / bdev_poll
 * calls above unchanged, and the common checks still happen before a layer
 * sees an operation (byte-range overflow, writes to a read-only device, depth
 * admission, zero-length operations completing at once). A layer therefore
 * only sees admitted, non-empty operations.
 *
 * Each operation a layer receives must complete exactly once: either by the
 * layer's poll() returning it, or through bdev_layer_complete(). */
struct bdev_layer_ops {
	/* Creates the layer's state for one channel (one thread). `ch` is the
	 * channel the caller sees; keep it for bdev_layer_complete(). `layer`
	 * is the layer's copy of the context given to bdev_layer_open(). */
	int (*channel_create)(void *layer, struct bdev_channel *ch, uint32_t depth,
			      void **layer_ch);
	/* Like bdev_channel_destroy: no buffer may be touched after it returns. */
	void (*channel_destroy)(void *layer_ch);
	/* bytes: the iovecs' total, > 0. */
	void (*add_rw)(void *layer_ch, bool write, uint64_t sector, const struct iovec *iov,
		       int iovcnt, uint64_t bytes, uint64_t id);
	void (*add_flush)(void *layer_ch, uint64_t id);
	/* punch_hole: deallocate (bdev_add_discard, or write-zeroes with unmap);
	 * else zero the range keeping it allocated. count > 0. */
	void (*add_fallocate)(void *layer_ch, bool punch_hole, uint64_t sector, uint64_t count,
			      uint64_t id);
	int (*submit)(void *layer_ch);
	/* Non-blocking, called with max >= 0: completions of operations the
	 * layer passed on. Completions made with bdev_layer_complete() are
	 * returned by bdev_poll() around this call. */
	int (*poll)(void *layer_ch, struct bdev_completion *out, int max);
	/* Readable when bdev_poll() may have something to return. */
	int (*completion_fd)(const void *layer_ch);
	/* bdev_needs_submit() of the layer's channel: true while the devices
	 * below hold operations the kernel has not taken (nothing will signal
	 * the completion fd for them). NULL: never. */
	bool (*needs_submit)(const void *layer_ch);
	/* Called by bdev_close() with the layer's copy of its context before
	 * it is freed (the crypt layer wipes its keys here). NULL: nothing. */
	void (*destroy)(void *layer);
};

/* A device whose channels are the layer's. Size, read-only, alignment, queue
 * depth and flags are those of `below` (the device the layer stacks on).
 * `layer` (layer_size bytes, copied; may be 0 bytes) is handed to the layer's
 * channel_create; it lives as long as the device and is freed with it by
 * bdev_close, so it holds only borrowed pointers and plain values. The devices
 * it points to must outlive this one. */
int bdev_layer_open(const struct bdev_layer_ops *ops, const void *layer, size_t layer_size,
		    const struct bdev *below, struct bdev **out);
/* Complete an operation of a layer channel without the layer's poll (a
 * refused request, a failure found while it was queued); bdev_poll returns
 * it. */
void bdev_layer_complete(struct bdev_channel *ch, uint64_t id, int result);

#endif

/* io_uring engine: the hot path.
 *
 * Each channel owns a ring, its file registered as fixed file 0, and a table
 * of `depth` request entries allocated at creation. An entry carries one
 * operation from bdev_add_* to its completion, including any continuation of
 * a short transfer, so the path allocates nothing and copies no data.
 * bdev_submit() is one io_uring_enter; bdev_poll() only reads the completion
 * ring, except after a short transfer (rare) when it submits the rest. */
#include "bdev/bdev_internal.h"
#include "bdev/iov_cursor.h"

#include "common/common.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define NO_REQUEST UINT32_MAX
/* Plain READ/WRITE carry a 32-bit length; the kernel caps a transfer below
 * this anyway (MAX_RW_COUNT), and the rest is continued like any short one. */
#define MAX_PLAIN_LEN ((size_t)INT32_MAX)

struct uring_request {
	uint64_t id;
	uint64_t offset; /* file offset of the next transfer step */
	struct iov_cursor cursor;
	/* The operation: READV or WRITEV for any transfer (even one sent as
	 * plain READ/WRITE), FSYNC or FALLOCATE. */
	uint8_t opcode;
	uint32_t next_free;
};

struct uring_channel {
	struct bdev_channel base;
	struct io_uring ring;
	bool ring_ready;
	bool needs_submit; /* SQEs the kernel has not taken yet */
	uint8_t sqe_flags; /* IOSQE_FIXED_FILE once the fd is registered */
	int sqe_fd;	   /* what SQEs name: registered index 0, or fd */
	int fd;
	int event_fd;
	uint32_t in_use;
	uint32_t free_head;
	struct uring_request *requests;
};

static struct uring_channel *to_uring(struct bdev_channel *ch)
{
	return (struct uring_channel *)ch;
}

static struct uring_request *request_take(struct uring_channel *ch)
{
	if (ch->free_head == NO_REQUEST)
		return NULL;
	struct uring_request *req = &ch->requests[ch->free_head];
	ch->free_head = req->next_free;
	ch->in_use++;
	return req;
}

static void request_release(struct uring_channel *ch, struct uring_request *req)
{
	/* LIFO: the entry reused next is the one still warm in cache. */
	uint32_t index = (uint32_t)(req - ch->requests);
	req->next_free = ch->free_head;
	ch->free_head = index;
	ch->in_use--;
}

static struct io_uring_sqe *sqe_for(struct uring_channel *ch, struct uring_request *req)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ch->ring);
	if (sqe)
		io_uring_sqe_set_data64(sqe, (uint64_t)(req - ch->requests));
	return sqe;
}

/* The operation could not be queued: it completes at the next poll. */
static void finish_now(struct uring_channel *ch, struct uring_request *req, int result)
{
	uint64_t id = req->id;
	request_release(ch, req);
	bdev_channel_complete(&ch->base, id, result);
}

static int queue_transfer_step(struct uring_channel *ch, struct uring_request *req)
{
	struct io_uring_sqe *sqe = sqe_for(ch, req);
	if (!sqe)
		return -EAGAIN;
	const struct iovec *iov;
	int iovcnt;
	iov_cursor_pending(&req->cursor, &iov, &iovcnt);
	bool write = req->opcode == IORING_OP_WRITEV;
	if (iovcnt == 1 && iov->iov_len <= MAX_PLAIN_LEN) {
		/* One buffer: plain READ/WRITE spares the kernel importing
		 * (and, when it goes async, allocating) an iovec array. */
		if (write)
			io_uring_prep_write(sqe, ch->sqe_fd, iov->iov_base, (unsigned)iov->iov_len,
					    req->offset);
		else
			io_uring_prep_read(sqe, ch->sqe_fd, iov->iov_base, (unsigned)iov->iov_len,
					   req->offset);
	} else if (write) {
		io_uring_prep_writev(sqe, ch->sqe_fd, iov, (unsigned)iovcnt, req->offset);
	} else {
		io_uring_prep_readv(sqe, ch->sqe_fd, iov, (unsigned)iovcnt, req->offset);
	}
	sqe->flags |= ch->sqe_flags;
	return 0;
}

static void uring_add_rw(struct bdev_channel *base, bool write, uint64_t offset,
			 const struct iovec *iov, int iovcnt, uint64_t id)
{
	struct uring_channel *ch = to_uring(base);
	struct uring_request *req = request_take(ch);
	if (!req) { /* cannot happen: admission keeps in_use <= depth */
		bdev_channel_complete(base, id, -EAGAIN);
		return;
	}
	req->id = id;
	req->offset = offset;
	req->opcode = write ? IORING_OP_WRITEV : IORING_OP_READV;
	iov_cursor_init(&req->cursor, iov, iovcnt);
	if (queue_transfer_step(ch, req) < 0)
		finish_now(ch, req, -EAGAIN);
}

static void uring_add_flush(struct bdev_channel *base, uint64_t id)
{
	struct uring_channel *ch = to_uring(base);
	/* With O_SYNC every write is already durable when it completes. */
	if (base->dev->write_through) {
		bdev_channel_complete(base, id, 0);
		return;
	}
	struct uring_request *req = request_take(ch);
	if (!req) {
		bdev_channel_complete(base, id, -EAGAIN);
		return;
	}
	req->id = id;
	req->opcode = IORING_OP_FSYNC;
	struct io_uring_sqe *sqe = sqe_for(ch, req);
	if (!sqe) {
		finish_now(ch, req, -EAGAIN);
		return;
	}
	io_uring_prep_fsync(sqe, ch->sqe_fd, 0);
	sqe->flags |= ch->sqe_flags;
}

static void uring_add_fallocate(struct bdev_channel *base, int mode, uint64_t offset, uint64_t len,
				uint64_t id)
{
	struct uring_channel *ch = to_uring(base);
	struct uring_request *req = request_take(ch);
	if (!req) {
		bdev_channel_complete(base, id, -EAGAIN);
		return;
	}
	req->id = id;
	req->opcode = IORING_OP_FALLOCATE;
	struct io_uring_sqe *sqe = sqe_for(ch, req);
	if (!sqe) {
		finish_now(ch, req, -EAGAIN);
		return;
	}
	io_uring_prep_fallocate(sqe, ch->sqe_fd, mode, (off_t)offset, (off_t)len);
	sqe->flags |= ch->sqe_flags;
}

/* Weak so that unit tests can link their own definition, one that refuses
 * submits on demand to drive the retry paths (tests/unit/bdev/
 * uring_submit_faults.c); the product pays one direct call and keeps no
 * test state. */
__attribute__((weak)) int bdev_uring_enter(struct io_uring *ring)
{
	return io_uring_submit(ring);
}

/* Hands every SQE not yet taken by the kernel to it: one io_uring_enter. */
static int flush_submissions(struct uring_channel *ch)
{
	int rc = bdev_uring_enter(&ch->ring);
	/* A failed enter, or one stopped by a bad SQE, leaves entries in the
	 * SQ; they go with the next submit or poll, never reported twice, and
	 * bdev_needs_submit() tells the owner not to sleep meanwhile. */
	ch->needs_submit = io_uring_sq_ready(&ch->ring) > 0;
	if (rc >= 0 || rc == -EAGAIN || rc == -EBUSY || rc == -EINTR)
		return 0;
	return rc;
}

static int uring_submit(struct bdev_channel *base)
{
	struct uring_channel *ch = to_uring(base);
	if (io_uring_sq_ready(&ch->ring) == 0)
		return 0;
	return flush_submissions(ch);
}

/* Applies one CQE to its request. Returns true with *result set when the
 * operation is over; false when the rest of a short transfer was queued. */
static bool request_progress(struct uring_channel *ch, struct uring_request *req, int res,
			     int *result)
{
	if (res < 0) {
		*result = res;
		return true;
	}
	if (req->opcode != IORING_OP_READV && req->opcode != IORING_OP_WRITEV) {
		*result = 0;
		return true;
	}
	if (res == 0) { /* end of file: every step asks for at least one byte */
		*result = -EIO;
		return true;
	}
	if (iov_cursor_advance(&req->cursor, (size_t)res)) {
		*result = 0;
		return true;
	}
	req->offset += (uint64_t)res;
	if (queue_transfer_step(ch, req) < 0) {
		*result = -EAGAIN;
		return true;
	}
	ch->needs_submit = true;
	return false;
}

static int uring_poll(struct bdev_channel *base, struct bdev_completion *out, int max)
{
	struct uring_channel *ch = to_uring(base);
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int n = 0;
	io_uring_for_each_cqe(&ch->ring, head, cqe)
	{
		if (n >= max)
			break;
		seen++;
		struct uring_request *req = &ch->requests[cqe->user_data];
		int result;
		if (!request_progress(ch, req, cqe->res, &result))
			continue;
		out[n].id = req->id;
		out[n].result = result;
		n++;
		request_release(ch, req);
		base->outstanding--;
	}
	if (seen)
		io_uring_cq_advance(&ch->ring, seen);
	if (ch->needs_submit)
		flush_submissions(ch);
	return n;
}

static int uring_completion_fd(const struct bdev_channel *base)
{
	return ((const struct uring_channel *)base)->event_fd;
}

/* Whatever left them there (an add without submit, a refused enter, a
 * continuation queued by poll): entries still in the SQ. */
static bool uring_needs_submit(const struct bdev_channel *base)
{
	const struct uring_channel *ch = (const struct uring_channel *)base;
	return io_uring_sq_ready(&ch->ring) > 0;
}

/* The kernel may still be reading or writing caller memory for requests it
 * has taken: wait for each of them before the ring goes away. */
static void drain_in_flight(struct uring_channel *ch)
{
	if (ch->in_use == 0)
		return;
	io_uring_submit(&ch->ring);
	/* Each request has at most one SQE; those still in the SQ never
	 * reached the kernel and will not complete. */
	uint32_t pending = ch->in_use - io_uring_sq_ready(&ch->ring);
	while (pending > 0) {
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe(&ch->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			log_error("bdev: cannot wait for %u operations in flight: %s", pending,
				  strerror(-rc));
			return;
		}
		io_uring_cqe_seen(&ch->ring, cqe);
		pending--;
	}
}

static void uring_channel_free(struct uring_channel *ch)
{
	if (ch->ring_ready) {
		drain_in_flight(ch);
		io_uring_queue_exit(&ch->ring);
	}
	if (ch->event_fd >= 0)
		close(ch->event_fd);
	if (ch->fd >= 0)
		close(ch->fd);
	free(ch->requests);
	bdev_channel_fini(&ch->base);
	free(ch);
}

static void uring_channel_destroy(struct bdev_channel *base)
{
	uring_channel_free(to_uring(base));
}

static int setup_ring(struct uring_channel *ch, uint32_t depth)
{
	/* Default flags: completions must appear in the CQ without a syscall,
	 * which rules out COOP_TASKRUN and DEFER_TASKRUN. */
	int rc = io_uring_queue_init(depth, &ch->ring, 0);
	if (rc < 0)
		return rc;
	ch->ring_ready = true;
	ch->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->event_fd < 0)
		return -errno;
	rc = io_uring_register_eventfd(&ch->ring, ch->event_fd);
	if (rc < 0)
		return rc;
	/* A fixed file saves a file-table lookup and refcount per request;
	 * plain fds still work where registration is refused. */
	if (io_uring_register_files(&ch->ring, &ch->fd, 1) == 0) {
		ch->sqe_fd = 0;
		ch->sqe_flags = IOSQE_FIXED_FILE;
	} else {
		ch->sqe_fd = ch->fd;
		ch->sqe_flags = 0;
	}
	return 0;
}

static int uring_channel_create(struct bdev *dev, uint32_t depth, struct bdev_channel **out)
{
	struct uring_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->fd = -1;
	ch->event_fd = -1;
	int rc = bdev_channel_init(&ch->base, dev, depth);
	if (rc < 0) {
		free(ch);
		return rc;
	}
	ch->requests = calloc(depth, sizeof(*ch->requests));
	if (!ch->requests) {
		rc = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < depth; i++)
		ch->requests[i].next_free = i + 1 < depth ? i + 1 : NO_REQUEST;
	ch->free_head = 0;
	ch->fd = bdev_open_channel_fd(dev);
	if (ch->fd < 0) {
		rc = ch->fd;
		goto fail;
	}
	rc = setup_ring(ch, depth);
	if (rc < 0)
		goto fail;
	*out = &ch->base;
	return 0;
fail:
	uring_channel_free(ch);
	return rc;
}

const struct bdev_engine_ops bdev_uring_ops = {
    .channel_create = uring_channel_create,
    .channel_destroy = uring_channel_destroy,
    .add_rw = uring_add_rw,
    .add_flush = uring_add_flush,
    .add_fallocate = uring_add_fallocate,
    .submit = uring_submit,
    .poll = uring_poll,
    .completion_fd = uring_completion_fd,
    .needs_submit = uring_needs_submit,
};

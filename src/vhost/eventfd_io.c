/* Kick and call eventfds without blocking the worker; see eventfd_io.h. */
#include "vhost/eventfd_io.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* One write in flight, plus cancels of writes to replaced fds. */
#define RING_ENTRIES 8
/* user_data of a cancel request: never a write's sequence number. */
#define CANCEL_TAG UINT64_MAX
/* A write at the current file position, as write(2) does: an offset would
 * make the write fail on a pipe. */
#define CURRENT_POSITION UINT64_MAX

/* The buffer of every write: it must outlive writes the kernel completes later. */
static const uint64_t one = 1;

int eventfd_drain(int fd)
{
	uint64_t value;
	struct iovec iov = {&value, sizeof(value)};
	ssize_t n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
	if (n < 0 && errno == EOPNOTSUPP)
		n = read(fd, &value, sizeof(value));
	if (n > 0)
		return 0;
	if (n == 0)
		return -ENODATA;
	/* EAGAIN: someone else emptied it since poll(2) looked. */
	return errno == EAGAIN || errno == EINTR ? 0 : -errno;
}

int eventfd_io_init(struct eventfd_io *e)
{
	memset(e, 0, sizeof(*e));
	int rc = io_uring_queue_init(RING_ENTRIES, &e->ring, 0);
	e->ring_ready = rc == 0;
	return rc;
}

void eventfd_io_fini(struct eventfd_io *e)
{
	/* The kernel cancels writes still pending; this does not wait for them. */
	if (e->ring_ready)
		io_uring_queue_exit(&e->ring);
	e->ring_ready = false;
	e->write_pending = false;
}

/* Consumes completions; returns the error of the newest write if it failed. */
static int reap(struct eventfd_io *e)
{
	struct io_uring_cqe *cqe;
	int err = 0;
	while (io_uring_peek_cqe(&e->ring, &cqe) == 0) {
		uint64_t seq = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&e->ring, cqe);
		if (!e->write_pending || seq != e->write_seq)
			continue; /* a cancel, or a write to a forgotten fd */
		e->write_pending = false;
		/* EAGAIN: the counter is saturated, the reader is signalled
		 * already. EINTR, ECANCELED: cancelled. */
		if (res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED)
			err = res;
	}
	return err;
}

static int submit(struct eventfd_io *e)
{
	int rc;
	do
		rc = io_uring_submit(&e->ring);
	while (rc == -EINTR);
	return rc < 0 ? rc : 0;
}

/* Used when there is no ring or the ring refuses work: O_NONBLOCK (set on
 * receipt) is then all that keeps write(2) from blocking. */
static int plain_write(int fd)
{
	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

int eventfd_io_signal(struct eventfd_io *e, int fd)
{
	if (!e->ring_ready)
		return plain_write(fd);
	int err = reap(e);
	/* A write an earlier submit could not hand over: it goes first. */
	if (io_uring_sq_ready(&e->ring) > 0) {
		if (submit(e) < 0)
			return plain_write(fd);
		int done = reap(e);
		err = err ? err : done;
	}
	if (e->write_pending)
		return err; /* that write delivers this signal too */
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	if (!sqe)
		return plain_write(fd);
	io_uring_prep_write(sqe, fd, &one, sizeof(one), CURRENT_POSITION);
	io_uring_sqe_set_data64(sqe, ++e->write_seq);
	e->write_pending = true;
	/* The kernel short of memory: the entry stays queued and goes with the
	 * next submit (an extra signal at worst), but this one must not wait. */
	if (submit(e) < 0)
		return plain_write(fd);
	/* Usually complete already: a write that can be done at once is done
	 * inline. */
	int done = reap(e);
	return err ? err : done;
}

void eventfd_io_forget(struct eventfd_io *e)
{
	if (!e->ring_ready)
		return;
	reap(e);
	/* An entry still unsubmitted names the fd by number, which may be
	 * reused once the old fd is closed: it must reach the kernel now, or
	 * the ring is dropped with it. */
	if (io_uring_sq_ready(&e->ring) > 0 && submit(e) < 0) {
		eventfd_io_fini(e);
		eventfd_io_init(e);
		return;
	}
	if (!e->write_pending)
		return;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	if (sqe) {
		io_uring_prep_cancel64(sqe, e->write_seq, 0);
		io_uring_sqe_set_data64(sqe, CANCEL_TAG);
		submit(e);
	}
	e->write_pending = false;
}

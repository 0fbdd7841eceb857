/* Reading and writing the eventfds a front end shares with us (kick and
 * call) without ever blocking the calling worker thread.
 *
 * The front end holds the same open file description as we do, so the
 * O_NONBLOCK we set on receipt is only a first line: it can clear the flag
 * again at any time, read a kick counter empty between our poll(2) and our
 * read, or saturate a call counter so that a write would wait for a reader
 * that never comes. Then a blocking read or write would wedge the worker,
 * and with it the setters, GET_VRING_BASE, teardown and SIGTERM.
 *
 * - Draining uses preadv2(RWF_NOWAIT): the kernel honours it on eventfds
 *   whatever the file status flags say.
 * - Signalling goes through a small io_uring owned by the worker: the write
 *   is done inline when it can complete at once (the usual case) and is
 *   otherwise left to the kernel (armed poll or an io-wq thread); the worker
 *   moves on either way, and a signal still pending covers later ones. */
#ifndef UBIBLK_VHOST_EVENTFD_IO_H
#define UBIBLK_VHOST_EVENTFD_IO_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct eventfd_io {
	struct io_uring ring;
	bool ring_ready; /* false: plain write(2) on the O_NONBLOCK fd */
	bool write_pending;
	uint64_t write_seq; /* user_data of the newest write */
};

/* Resets the counter of a kick fd that poll(2) reported readable. Returns 0
 * (also when another reader emptied it first), -ENODATA when the fd is at
 * end of file (not an eventfd: it would be reported readable forever), or
 * -errno. Where the kernel refuses RWF_NOWAIT for the fd (not an eventfd, or
 * a kernel from before 2020) it falls back to read(2), which relies on
 * O_NONBLOCK still being set. */
int eventfd_drain(int fd);

/* Sets up the ring; without one (io_uring unavailable) signals fall back to
 * write(2) on the O_NONBLOCK fd. Returns 0 or the ring's -errno (the
 * fallback is then in place). */
int eventfd_io_init(struct eventfd_io *e);
void eventfd_io_fini(struct eventfd_io *e);
/* Adds 1 to the counter of fd without blocking. A saturated counter, or a
 * write still pending from an earlier call, already means "signalled".
 * Returns 0 or -errno when the kernel reported a failed write. */
int eventfd_io_signal(struct eventfd_io *e, int fd);
/* The fd given to eventfd_io_signal() is replaced or closed: a write still
 * pending on it is cancelled, so the next signal goes to the new fd. */
void eventfd_io_forget(struct eventfd_io *e);

#endif

/* Kick and call eventfds a hostile front end shares with us: it clears
 * O_NONBLOCK, empties the kick counter first, saturates the call counter.
 * None of it may block the caller. A call that would block is caught by
 * alarm(): the test process dies instead of hanging. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "vhost/eventfd_io.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#define WATCHDOG_S 10
#define SATURATED  0xfffffffffffffffeull

static bool readable_within(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* The counter, read without blocking (and reset), 0 when empty. */
static uint64_t take(int fd)
{
	uint64_t v = 0;
	int flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	if (read(fd, &v, sizeof(v)) < 0)
		assert_int_equal(errno, EAGAIN);
	fcntl(fd, F_SETFL, flags);
	return v;
}

static void put(int fd, uint64_t v)
{
	assert_int_equal(write(fd, &v, sizeof(v)), sizeof(v));
}

static void test_set_nonblock(void **state)
{
	int fd = eventfd(0, 0);
	assert_int_equal(fd_set_nonblocking(fd), 0);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	close(fd);
	assert_int_equal(fd_set_nonblocking(fd), -EBADF);
}

/* The front end cleared O_NONBLOCK and read the counter after our poll. */
static void test_drain_of_an_emptied_blocking_fd_returns(void **state)
{
	alarm(WATCHDOG_S);
	int fd = eventfd(0, 0);
	assert_int_equal(eventfd_drain(fd), 0);
	put(fd, 3);
	assert_int_equal(eventfd_drain(fd), 0);
	assert_false(readable_within(fd, 0));
	assert_int_equal(eventfd_drain(fd), 0);
	close(fd);
	alarm(0);
}

/* Readable forever without being an eventfd: reported, not spun on. */
static void test_drain_at_end_of_file(void **state)
{
	alarm(WATCHDOG_S);
	int file = memfd_create("kick", MFD_CLOEXEC);
	assert_int_equal(eventfd_drain(file), -ENODATA);
	close(file);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "12345678", 8), 8);
	assert_int_equal(eventfd_drain(p[0]), 0);
	close(p[1]);
	assert_int_equal(eventfd_drain(p[0]), -ENODATA);
	close(p[0]);
	alarm(0);
}

static void test_signal_is_done_at_once_normally(void **state)
{
	struct eventfd_io e;
	assert_int_equal(eventfd_io_init(&e), 0);
	int fd = eventfd(0, EFD_NONBLOCK);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(eventfd_io_signal(&e, fd), 0);
		assert_int_equal(take(fd), 1); /* inline: no waiting */
	}
	/* A blocking fd that has room is just as quick. */
	int blocking = eventfd(0, 0);
	assert_int_equal(eventfd_io_signal(&e, blocking), 0);
	assert_true(readable_within(blocking, 1000));
	assert_int_equal(take(blocking), 1);
	eventfd_io_fini(&e);
	close(fd);
	close(blocking);
}

/* A saturated counter on a blocking fd: write(2) would wait for a reader.
 * The signal is left pending, later ones fold into it, and it lands once
 * the reader makes room. */
static void test_signal_to_a_saturated_blocking_fd_returns(void **state)
{
	alarm(WATCHDOG_S);
	struct eventfd_io e;
	assert_int_equal(eventfd_io_init(&e), 0);
	int fd = eventfd(0, 0);
	put(fd, SATURATED);
	assert_int_equal(eventfd_io_signal(&e, fd), 0);
	assert_int_equal(eventfd_io_signal(&e, fd), 0);
	assert_int_equal(eventfd_io_signal(&e, fd), 0);
	assert_int_equal(take(fd), SATURATED);
	assert_true(readable_within(fd, 2000));
	assert_int_equal(take(fd), 1); /* one pending write, not three */
	/* Delivered: the next signal is a new write. */
	assert_int_equal(eventfd_io_signal(&e, fd), 0);
	assert_true(readable_within(fd, 2000));
	assert_int_equal(take(fd), 1);
	/* Saturated again, with O_NONBLOCK set this time. */
	put(fd, SATURATED);
	assert_int_equal(fd_set_nonblocking(fd), 0);
	assert_int_equal(eventfd_io_signal(&e, fd), 0);
	/* Teardown with a write pending does not wait for it. */
	eventfd_io_fini(&e);
	close(fd);
	alarm(0);
}

/* The call fd is replaced while a write to the old one is stuck: the new fd
 * is signalled at once, and the old write is cancelled. */
static void test_forget_cancels_a_stuck_write(void **state)
{
	alarm(WATCHDOG_S);
	struct eventfd_io e;
	assert_int_equal(eventfd_io_init(&e), 0);
	int old_fd = eventfd(0, 0);
	int new_fd = eventfd(0, 0);
	put(old_fd, SATURATED);
	assert_int_equal(eventfd_io_signal(&e, old_fd), 0);
	eventfd_io_forget(&e);
	assert_int_equal(eventfd_io_signal(&e, new_fd), 0);
	assert_true(readable_within(new_fd, 2000));
	assert_int_equal(take(new_fd), 1);
	assert_int_equal(take(old_fd), SATURATED);
	usleep(100000);
	assert_int_equal(take(old_fd), 0); /* the cancelled write never landed */
	eventfd_io_fini(&e);
	close(old_fd);
	close(new_fd);
	alarm(0);
}

/* Without a ring (io_uring unavailable) signals fall back to write(2). */
static void test_signal_without_a_ring(void **state)
{
	struct eventfd_io e = {.ring_ready = false};
	int fd = eventfd(0, EFD_NONBLOCK);
	assert_int_equal(eventfd_io_signal(&e, fd), 0);
	assert_int_equal(take(fd), 1);
	put(fd, SATURATED);
	assert_int_equal(eventfd_io_signal(&e, fd), 0); /* EAGAIN: signalled already */
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(eventfd_io_signal(&e, p[0]), -EBADF); /* the read end */
	eventfd_io_forget(&e);
	close(p[0]);
	close(p[1]);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_set_nonblock),
	    cmocka_unit_test(test_drain_of_an_emptied_blocking_fd_returns),
	    cmocka_unit_test(test_drain_at_end_of_file),
	    cmocka_unit_test(test_signal_is_done_at_once_normally),
	    cmocka_unit_test(test_signal_to_a_saturated_blocking_fd_returns),
	    cmocka_unit_test(test_forget_cancels_a_stuck_write),
	    cmocka_unit_test(test_signal_without_a_ring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

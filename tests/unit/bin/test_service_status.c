/* service_status: the STATUS= line (progress rounded down, failed stripes,
 * complete), and the reporter's messages against a socket the test holds:
 * READY=1 once, STOPPING=1 after a stop request (from the reporter thread,
 * before service_status_end) or at the end, nothing without NOTIFY_SOCKET. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "service_status.h"

static void expect_format(const char *want, uint64_t source, uint64_t fetched, uint64_t failed)
{
	char buf[256];
	service_status_format(buf, sizeof(buf), "serving /run/ubiblk/d.sock", source, fetched,
			      failed);
	assert_string_equal(buf, want);
}

static void test_format(void **state)
{
	(void)state;
	expect_format("serving /run/ubiblk/d.sock", 0, 0, 0);
	expect_format("serving /run/ubiblk/d.sock; hydration 0/4608 stripes (0%)", 4608, 0, 0);
	expect_format("serving /run/ubiblk/d.sock; hydration 428/4608 stripes (9%)", 4608, 428, 0);
	/* Rounded down: 100% only once complete. */
	expect_format("serving /run/ubiblk/d.sock; hydration 4607/4608 stripes (99%)", 4608, 4607,
		      0);
	expect_format("serving /run/ubiblk/d.sock; hydration 4600/4608 stripes (99%), 8 failed",
		      4608, 4600, 8);
	expect_format("serving /run/ubiblk/d.sock; hydration complete (4608 stripes)", 4608, 4608,
		      0);
	/* A buffer too small cuts the line, never overruns. */
	char small[16];
	service_status_format(small, sizeof(small), "serving /run/ubiblk/d.sock", 10, 1, 1);
	assert_string_equal(small, "serving /run/ub");
}

static int receiver(char *path, size_t len)
{
	char dir[] = "/tmp/ubiblk-status-XXXXXX";
	assert_non_null(mkdtemp(dir));
	snprintf(path, len, "%s/notify.sock", dir);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	struct timeval timeout = {.tv_sec = 10};
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	return fd;
}

static void remove_receiver(int fd, char *path)
{
	close(fd);
	unlink(path);
	*strrchr(path, '/') = '\0';
	rmdir(path);
	unsetenv("NOTIFY_SOCKET");
}

static void expect_message(int fd, const char *want)
{
	char buf[512];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void expect_nothing(int fd)
{
	char buf[64];
	assert_int_equal(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

/* Runs first: the stop request is a once-per-process event. */
static void test_end_without_stop_sends_stopping(void **state)
{
	(void)state;
	char path[128];
	int fd = receiver(path, sizeof(path));
	service_status_start(NULL, NULL);
	service_status_ready("serving /dev/ublkb3");
	expect_message(fd, "READY=1\nSTATUS=serving /dev/ublkb3");
	service_status_ready("serving again"); /* once */
	service_status_end();
	expect_message(fd, "STOPPING=1\nSTATUS=stopping");
	expect_nothing(fd);
	remove_receiver(fd, path);
}

static void test_stop_request_sends_stopping_before_the_end(void **state)
{
	(void)state;
	char path[128];
	int fd = receiver(path, sizeof(path));
	service_status_start(NULL, NULL);
	service_status_stop_requested();
	/* From the reporter thread while the daemon still drains: the end has
	 * not been called yet. */
	expect_message(fd, "STOPPING=1\nSTATUS=stopping");
	service_status_end();
	expect_nothing(fd);
	remove_receiver(fd, path);
}

static void test_nothing_without_notify_socket(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	service_status_start(NULL, NULL);
	service_status_ready("serving x");
	service_status_end();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_end_without_stop_sends_stopping),
	    cmocka_unit_test(test_stop_request_sends_stopping_before_the_end),
	    cmocka_unit_test(test_nothing_without_notify_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

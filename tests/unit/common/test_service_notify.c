/* service_notify: NOTIFY_SOCKET's address forms (path, "@abstract", refused
 * ones), no-op without the variable, one datagram with the exact text to a
 * socket the test holds, and a failure that is returned, not fatal. */
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

struct fixture {
	char dir[64];
	char path[128];
	int fd;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/ubiblk-notify-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/notify.sock", f->dir);
	f->fd = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f->fd >= 0)
		close(f->fd);
	unlink(f->path);
	rmdir(f->dir);
	unsetenv("NOTIFY_SOCKET");
	free(f);
	return 0;
}

/* A datagram socket bound to addr, with a receive timeout so a missing
 * message fails the test instead of hanging it. */
static int bound_socket(const struct sockaddr_un *addr, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (const struct sockaddr *)addr, len), 0);
	struct timeval timeout = {.tv_sec = 10};
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
	return fd;
}

static void expect_datagram(int fd, const char *text)
{
	char buf[512];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, text);
}

static void test_address_forms(void **state)
{
	(void)state;
	struct sockaddr_un addr;
	socklen_t len = 0;
	assert_int_equal(service_notify_address("/run/systemd/notify", &addr, &len), 0);
	assert_string_equal(addr.sun_path, "/run/systemd/notify");
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) +
				  strlen("/run/systemd/notify") + 1);

	/* Abstract: a leading NUL, no terminator, the length ends the name. */
	assert_int_equal(service_notify_address("@my/notify", &addr, &len), 0);
	assert_int_equal(addr.sun_path[0], '\0');
	assert_memory_equal(addr.sun_path + 1, "my/notify", 9);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 1 + 9);

	assert_int_equal(service_notify_address("@", &addr, &len), -EINVAL);
	assert_int_equal(service_notify_address("relative/notify", &addr, &len), -EAFNOSUPPORT);
	assert_int_equal(service_notify_address("vsock:2:1234", &addr, &len), -EAFNOSUPPORT);

	/* The longest path that fits with its terminator, and one more. */
	char path[sizeof(addr.sun_path) + 2];
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[sizeof(addr.sun_path) - 1] = '\0';
	assert_int_equal(service_notify_address(path, &addr, &len), 0);
	path[sizeof(addr.sun_path) - 1] = 'a';
	path[sizeof(addr.sun_path)] = '\0';
	assert_int_equal(service_notify_address(path, &addr, &len), -ENAMETOOLONG);
	/* An abstract name may use the whole sun_path after its NUL. */
	path[0] = '@';
	assert_int_equal(service_notify_address(path, &addr, &len), 0);
	path[sizeof(addr.sun_path)] = 'a';
	path[sizeof(addr.sun_path) + 1] = '\0';
	assert_int_equal(service_notify_address(path, &addr, &len), -EINVAL);
}

static void test_no_socket_is_a_no_op(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_false(service_notify_enabled());
	assert_int_equal(service_notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_false(service_notify_enabled());
	assert_int_equal(service_notify("READY=1"), 0);
}

static void test_path_socket_gets_one_datagram(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_un addr;
	socklen_t len;
	assert_int_equal(service_notify_address(f->path, &addr, &len), 0);
	f->fd = bound_socket(&addr, len);
	setenv("NOTIFY_SOCKET", f->path, 1);
	assert_true(service_notify_enabled());
	assert_int_equal(service_notify("READY=1\nSTATUS=serving x"), 1);
	expect_datagram(f->fd, "READY=1\nSTATUS=serving x");
	assert_int_equal(service_notify("STOPPING=1"), 1);
	expect_datagram(f->fd, "STOPPING=1");
}

static void test_abstract_socket_gets_one_datagram(void **state)
{
	struct fixture *f = *state;
	char name[64];
	snprintf(name, sizeof(name), "@ubiblk-test-notify-%d-%s", (int)getpid(),
		 strrchr(f->dir, '-') + 1);
	struct sockaddr_un addr;
	socklen_t len;
	assert_int_equal(service_notify_address(name, &addr, &len), 0);
	f->fd = bound_socket(&addr, len);
	setenv("NOTIFY_SOCKET", name, 1);
	assert_int_equal(service_notify("READY=1"), 1);
	expect_datagram(f->fd, "READY=1");
}

static void test_failure_is_returned_not_fatal(void **state)
{
	struct fixture *f = *state;
	/* Nobody bound there: the caller hears why, every time, and goes on. */
	setenv("NOTIFY_SOCKET", f->path, 1);
	assert_int_equal(service_notify("READY=1"), -ENOENT);
	assert_int_equal(service_notify("READY=1"), -ENOENT);
	setenv("NOTIFY_SOCKET", "not-a-socket", 1);
	assert_int_equal(service_notify("READY=1"), -EAFNOSUPPORT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_address_forms),
	    cmocka_unit_test(test_no_socket_is_a_no_op),
	    cmocka_unit_test_setup_teardown(test_path_socket_gets_one_datagram, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_abstract_socket_gets_one_datagram, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_failure_is_returned_not_fatal, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

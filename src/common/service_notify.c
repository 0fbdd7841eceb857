/* service_notify: see "service manager notification" in common.h.
 *
 * The protocol is one datagram of newline-separated KEY=value lines sent to
 * the AF_UNIX socket $NOTIFY_SOCKET names; the manager learns our pid from
 * the socket's credentials, so nothing else is needed (no libsystemd). A
 * socket is opened per message: messages are rare (start, stop, a status
 * line every few seconds) and there is then no descriptor to share between
 * threads or to leak into children. */
#include "common.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* A manager that stops reading must not hang the daemon in sendmsg. */
#define NOTIFY_SEND_TIMEOUT_S 2

static atomic_flag failure_logged = ATOMIC_FLAG_INIT;

int service_notify_address(const char *value, struct sockaddr_un *addr, socklen_t *len)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	size_t n = strlen(value);
	if (value[0] == '@') {
		/* Abstract namespace: a leading NUL, the name without a
		 * terminator, and the address length says where it ends. */
		if (n < 2 || n > sizeof(addr->sun_path))
			return -EINVAL;
		memcpy(addr->sun_path + 1, value + 1, n - 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
		return 0;
	}
	/* systemd only ever hands out absolute paths; "vsock:" and anything
	 * else relative is not a socket this process could mean. */
	if (value[0] != '/')
		return -EAFNOSUPPORT;
	if (n >= sizeof(addr->sun_path))
		return -ENAMETOOLONG;
	memcpy(addr->sun_path, value, n);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

static int send_datagram(const struct sockaddr_un *addr, socklen_t len, const char *text)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval timeout = {.tv_sec = NOTIFY_SEND_TIMEOUT_S};
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	struct msghdr msg = {
	    .msg_name = (void *)addr,
	    .msg_namelen = len,
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	};
	int ret = sendmsg(fd, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
	close(fd);
	return ret;
}

int service_notify(const char *text)
{
	const char *value = getenv("NOTIFY_SOCKET");
	if (!value || !value[0])
		return 0;
	struct sockaddr_un addr;
	socklen_t len = 0;
	int ret = service_notify_address(value, &addr, &len);
	if (ret == 0)
		ret = send_datagram(&addr, len, text);
	if (ret == 0)
		return 1;
	/* Once: a manager that went away would otherwise fill the log every
	 * few seconds, and serving the disk matters more than telling it. */
	if (!atomic_flag_test_and_set(&failure_logged))
		log_debug("cannot notify the service manager at NOTIFY_SOCKET=%s: %s (further "
			  "failures are not logged)",
			  value, strerror(-ret));
	return ret;
}

bool service_notify_enabled(void)
{
	const char *value = getenv("NOTIFY_SOCKET");
	return value && value[0];
}

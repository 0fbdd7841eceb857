/* rpc_call: the client side of the RPC socket (see rpc.h), for tools that
 * poll a backend (ubiblk-top). One connection per call: the server closes
 * idle connections (RPC_IDLE_TIMEOUT_MS) and may hand a monitor's place to a
 * newer client, so a fresh connection is the one that always works. */
#include "rpc/rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"

/* A reply longer than this is refused: the server's own limit on unsent
 * replies (rpc_internal.h). */
#define RPC_CALL_MAX_REPLY (16u * 1024u * 1024u)

static int remaining_ms(uint64_t deadline_ns)
{
	uint64_t now = now_ns();
	if (now >= deadline_ns)
		return 0;
	return (int)((deadline_ns - now + 999999u) / 1000000u);
}

/* Waits for `events` on fd until the deadline; 0, or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
	for (;;) {
		int ms = remaining_ms(deadline_ns);
		if (ms == 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = events};
		int n = poll(&p, 1, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0)
			return 0;
	}
}

static int connect_socket(const char *path, uint64_t deadline_ns, int *out, struct error *err)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(addr.sun_path))
		return error_set(err, -ENAMETOOLONG, "connect %s: path too long", path);
	memcpy(addr.sun_path, path, len + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return error_set(err, -errno, "socket: %s", strerror(errno));
	/* A Unix connect either completes at once or fails with EAGAIN when
	 * the listener's backlog is full: that one is retried until the
	 * deadline, as a busy server may accept soon. */
	while (connect(fd, (const struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		if (e != EAGAIN || remaining_ms(deadline_ns) == 0) {
			close(fd);
			return error_set(err, -(e == EAGAIN ? ETIMEDOUT : e), "connect %s: %s",
					 path, strerror(e == EAGAIN ? ETIMEDOUT : e));
		}
		usleep(10000);
	}
	*out = fd;
	return 0;
}

static int send_request(int fd, const char *line, size_t len, uint64_t deadline_ns,
			struct error *err)
{
	size_t sent = 0;
	while (sent < len) {
		ssize_t n = send(fd, line + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = wait_fd(fd, POLLOUT, deadline_ns);
			if (rc < 0)
				return error_set(err, rc, "send: %s", strerror(-rc));
			continue;
		}
		if (n < 0)
			return error_set(err, -errno, "send: %s", strerror(errno));
		sent += (size_t)n;
	}
	return 0;
}

/* Reads up to the first newline; the line (without it) in *out, malloc'd. */
static int read_line(int fd, uint64_t deadline_ns, char **out, struct error *err)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return error_set(err, -ENOMEM, "out of memory");
	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= RPC_CALL_MAX_REPLY) {
				free(buf);
				return error_set(err, -EMSGSIZE, "reply longer than %u bytes",
						 RPC_CALL_MAX_REPLY);
			}
			char *bigger = realloc(buf, cap * 2);
			if (!bigger) {
				free(buf);
				return error_set(err, -ENOMEM, "out of memory");
			}
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = wait_fd(fd, POLLIN, deadline_ns);
			if (rc < 0) {
				free(buf);
				return error_set(err, rc, "no reply: %s", strerror(-rc));
			}
			continue;
		}
		if (n < 0) {
			int e = errno;
			free(buf);
			return error_set(err, -e, "recv: %s", strerror(e));
		}
		if (n == 0) {
			free(buf);
			return error_set(err, -ECONNRESET, "connection closed before the reply");
		}
		char *nl = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
		if (nl) {
			*nl = '\0';
			*out = buf;
			return 0;
		}
	}
}

int rpc_call(const char *path, const char *command, unsigned timeout_ms, char **reply,
	     struct error *err)
{
	*reply = NULL;
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
	char request[256];
	int len = snprintf(request, sizeof(request), "{\"command\":\"%s\"}\n", command);
	if (len < 0 || (size_t)len >= sizeof(request))
		return error_set(err, -EINVAL, "command name too long");
	int fd = -1;
	int rc = connect_socket(path, deadline, &fd, err);
	if (rc < 0)
		return rc;
	rc = send_request(fd, request, (size_t)len, deadline, err);
	if (rc == 0)
		rc = read_line(fd, deadline, reply, err);
	close(fd);
	return rc;
}

/* The vhost-user listener: one front end at a time, listen again after it
 * disconnects, stop on request.
 *
 * The listening socket stays open (and its path present) for the whole life
 * of vhost_blk_serve(). While a front end is connected, any further
 * connection is accepted and closed at once, so a second VMM gets an
 * immediate EOF instead of hanging in the backlog. Everything runs on the
 * calling thread, which waits in poll(2) on the stop eventfd, the listener
 * and the connection. */
#include "vhost/vhost.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "vhost/control.h"
#include "vhost/eventfd_io.h"

#define LISTEN_BACKLOG	16
#define ACCEPT_RETRY_MS 100

/* Set by vhost_blk_request_stop(), possibly from a signal handler. Once a
 * stop is requested it stays requested. The eventfd is created once and never
 * closed, so a signal handler can never write into a reused descriptor. */
static atomic_int stop_requested;
static atomic_int stop_event_fd = -1;

void vhost_blk_request_stop(void)
{
	int saved_errno = errno;
	atomic_store(&stop_requested, 1);
	int fd = atomic_load(&stop_event_fd);
	if (fd >= 0) {
		uint64_t one = 1;
		ssize_t written = write(fd, &one, sizeof(one));
		(void)written; /* a full counter is still readable: nothing to do */
	}
	errno = saved_errno;
}

static int stop_event_get(void)
{
	int fd = atomic_load(&stop_event_fd);
	if (fd >= 0)
		return fd;
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	atomic_store(&stop_event_fd, fd);
	/* A stop requested before the eventfd existed must still be seen. */
	if (atomic_load(&stop_requested))
		vhost_blk_request_stop();
	return fd;
}

static bool stop_is_requested(void)
{
	return atomic_load(&stop_requested) != 0;
}

static int listen_socket_create(const char *path, struct unix_listener *out)
{
	struct error err = {0};
	int ret = unix_listener_open(path, 0660, "vhost-user socket", out, &err);
	if (ret < 0)
		log_error("%s", err.text);
	return ret;
}

static bool accept_error_is_transient(int error)
{
	return error == EAGAIN || error == EWOULDBLOCK || error == EINTR || error == ECONNABORTED ||
	       error == EPROTO || error == EMFILE || error == ENFILE || error == ENOBUFS ||
	       error == ENOMEM;
}

/* Waits for a front end; 0 with *conn set, -ECANCELED on stop, or a fatal
 * accept error. */
static int wait_for_front_end(int stop_fd, int listener, int *conn)
{
	struct pollfd pfd[2] = {
	    {.fd = stop_fd, .events = POLLIN},
	    {.fd = listener, .events = POLLIN},
	};
	int timeout = -1;
	for (;;) {
		if (poll(pfd, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[0].revents & POLLIN)
			return -ECANCELED;
		timeout = -1;
		if (!(pfd[1].revents & POLLIN))
			continue;
		int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			*conn = fd;
			return 0;
		}
		int error = errno;
		if (!accept_error_is_transient(error)) {
			log_error("cannot accept a vhost-user connection: %s", strerror(error));
			return -error;
		}
		if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
			log_warn("cannot accept a vhost-user connection: %s (retrying)",
				 strerror(error));
			timeout = ACCEPT_RETRY_MS; /* wait before retrying, still stoppable */
		}
	}
}

static void refuse_extra_front_end(int listener)
{
	int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	log_warn("refused a second vhost-user connection: one front end at a time");
	close(fd);
}

static void log_peer(int conn)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		log_info("vhost-user front end connected (pid %d, uid %u)", (int)cred.pid,
			 (unsigned int)cred.uid);
	else
		log_info("vhost-user front end connected");
}

/* Serves one connection until it ends; -ECANCELED when a stop ended it. */
static int serve_connection(struct vhost_control *ctl, int stop_fd, int listener, int conn)
{
	struct pollfd pfd[4] = {
	    {.fd = stop_fd, .events = POLLIN},
	    {.fd = listener, .events = POLLIN},
	    {.fd = conn, .events = POLLIN},
	    {.fd = vhost_control_fault_fd(ctl), .events = POLLIN},
	};
	for (;;) {
		if (poll(pfd, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			return -errno;
		}
		if (pfd[0].revents & POLLIN)
			return -ECANCELED;
		if (pfd[3].revents & POLLIN) {
			/* Drained each time: a fault in a mapping the current
			 * table no longer holds leaves nothing broken, and an
			 * undrained fd would keep poll() returning at once. */
			eventfd_drain(pfd[3].fd);
			if (vhost_control_memory_broken(ctl)) {
				log_warn(
				    "ending the vhost-user connection: the front end shrank a "
				    "shared memory file under a mapped region (SIGBUS absorbed; "
				    "the region reads as zeros, no further request is served "
				    "from it)");
				return 0;
			}
		}
		/* The connection goes first: a front end that closed and
		 * reconnected must find its EOF handled, not be refused. Only
		 * a connection that has nothing pending is still in use. */
		if (!pfd[2].revents) {
			if (pfd[1].revents & POLLIN)
				refuse_extra_front_end(listener);
			continue;
		}
		struct error err = {.text = ""};
		int ret = vhost_control_process_message(ctl, conn, &err);
		if (ret == 0)
			continue;
		if (ret == -ECANCELED)
			return ret;
		if (ret == -ECONNRESET)
			log_info("vhost-user front end disconnected");
		else
			log_warn("ending the vhost-user connection: %s", err.text);
		return 0;
	}
}

int vhost_blk_serve(const struct vhost_blk_options *opts, struct bdev *dev)
{
	if (!opts->socket_path) {
		log_error("socket must be specified for the vhost backend");
		return -EINVAL;
	}
	int stop_fd = stop_event_get();
	if (stop_fd < 0) {
		log_error("cannot create the stop eventfd: %s", strerror(-stop_fd));
		return stop_fd;
	}
	struct unix_listener socket_file;
	int ret = listen_socket_create(opts->socket_path, &socket_file);
	if (ret < 0)
		return ret;
	int listener = socket_file.fd;
	log_info("listening for vhost-user front ends on %s", opts->socket_path);
	/* listen() is done: a front end that connects now is queued, not
	 * refused. */
	if (opts->ready)
		opts->ready(opts->ready_arg);

	while (!stop_is_requested()) {
		/* Fresh state for every connection: workers, channels, memory. */
		struct vhost_control *ctl;
		ret = vhost_control_create(opts, dev, stop_fd, &ctl);
		if (ret < 0)
			break;
		int conn = -1;
		ret = wait_for_front_end(stop_fd, listener, &conn);
		if (ret == 0) {
			log_peer(conn);
			ret = serve_connection(ctl, stop_fd, listener, conn);
			close(conn);
		}
		/* Finishes in-flight requests before the workers go away. */
		vhost_control_destroy(ctl);
		if (ret < 0)
			break;
	}
	if (ret == -ECANCELED || stop_is_requested()) {
		log_info("stop requested: vhost-user server stopped");
		ret = 0;
	}
	unix_listener_close(&socket_file, opts->socket_path);
	return ret;
}

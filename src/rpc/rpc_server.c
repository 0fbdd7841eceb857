/* The RPC socket and its listener thread.
 *
 * One thread serves every client with poll(2): the stop eventfd, the
 * listening socket and up to RPC_MAX_CLIENTS connections. When that many are
 * connected, a new connection takes the place of the client that has gone
 * longest without completing a request or taking a reply: refusing the new
 * one instead would let RPC_MAX_CLIENTS silent connections lock every
 * monitor out until the idle timeout, and a flood of them forever. A client
 * that asks at once, as monitors do, is answered before it can become the
 * longest idle: at most ACCEPTS_PER_TURN connections are accepted per poll
 * turn, and clients with input are served before accepting. A client that
 * completes no request line and takes no reply for the idle timeout is
 * closed as well, so idle connections do not pile up when nobody else
 * comes.
 *
 * Start-up: only a stale socket is removed from the path (never a regular
 * file or a directory, so a typo in the config cannot delete a disk image,
 * and never the socket of a server that still answers), and the umask is
 * left alone, because other threads (the fetch worker) already run and
 * would create files under it: the socket gets 0600 before bind() and 0660
 * by chmod() after it. */
#include "rpc/rpc_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

#define ACCEPT_RETRY_MS 100
/* Fewer than RPC_MAX_CLIENTS, so a client accepted in one turn is read in
 * the next before enough newcomers arrive to make it the longest idle. */
#define ACCEPTS_PER_TURN 16
#define SOCKET_MODE	 0660
#define POLL_FIXED_FDS	 2 /* the stop eventfd and the listener */

struct rpc_server {
	char *path;
	struct rpc_context ctx; /* trackers points at our own copy of the array */
	struct unix_listener listener;
	int stop_fd;
	pthread_t thread;
	uint64_t idle_timeout_ns;
	struct rpc_client clients[RPC_MAX_CLIENTS];
	uint32_t nclients;
	bool replacing_logged; /* once per burst of connections past the limit */
};

static int bind_socket(struct rpc_server *s, struct error *err)
{
	return unix_listener_open(s->path, SOCKET_MODE, "RPC socket", &s->listener, err);
}

static void drop_client(struct rpc_server *s, uint32_t i);

/* The client that went longest without completing a request or taking a
 * reply. */
static uint32_t longest_idle(const struct rpc_server *s)
{
	uint32_t oldest = 0;
	for (uint32_t i = 1; i < s->nclients; i++)
		if (s->clients[i].active_ns < s->clients[oldest].active_ns)
			oldest = i;
	return oldest;
}

int rpc_accept_one(int listen_fd, const char *what)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0)
			return fd;
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		int error = errno;
		log_warn("%s: cannot accept a connection: %s (retrying)", what, strerror(error));
		return -error;
	}
}

/* Accepts up to ACCEPTS_PER_TURN waiting connections; returns false when
 * accepting failed for lack of fds or memory and should pause. */
static bool accept_clients(struct rpc_server *s)
{
	for (int turn = 0; turn < ACCEPTS_PER_TURN; turn++) {
		int fd = rpc_accept_one(s->listener.fd, "RPC");
		if (fd < 0)
			return fd == -EAGAIN;
		if (s->nclients == RPC_MAX_CLIENTS) {
			if (!s->replacing_logged)
				log_warn("RPC: %u clients connected: each new connection replaces "
					 "the one idle longest",
					 RPC_MAX_CLIENTS);
			s->replacing_logged = true;
			drop_client(s, longest_idle(s));
		} else if (s->nclients < RPC_MAX_CLIENTS / 2) {
			s->replacing_logged = false;
		}
		struct rpc_client *c = &s->clients[s->nclients];
		if (rpc_client_init(c, fd) < 0) {
			log_warn("RPC: no memory for a new client");
			rpc_client_fini(c);
			continue;
		}
		s->nclients++;
	}
	return true;
}

/* Closes client i; the last client takes its place. */
static void drop_client(struct rpc_server *s, uint32_t i)
{
	rpc_client_fini(&s->clients[i]);
	s->nclients--;
	if (i != s->nclients) {
		s->clients[i] = s->clients[s->nclients];
		s->clients[s->nclients] = (struct rpc_client){.fd = -1};
	}
}

/* Milliseconds until `deadline_ns`, for poll(2); -1 without a deadline. */
static int poll_timeout_ms(uint64_t deadline_ns)
{
	if (deadline_ns == 0)
		return -1;
	uint64_t now = now_ns();
	return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999u) / 1000000u);
}

/* The earlier of two deadlines, 0 standing for none. */
static uint64_t earlier(uint64_t a, uint64_t b)
{
	return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

/* Closes the clients idle for the timeout; returns the next moment one
 * would be, or 0 without clients. */
static uint64_t drop_idle_clients(struct rpc_server *s)
{
	uint64_t now = now_ns(), next = 0;
	for (uint32_t i = s->nclients; i-- > 0;) {
		uint64_t expires = s->clients[i].active_ns + s->idle_timeout_ns;
		if (now >= expires) {
			log_debug("RPC client closed: idle for %llu ms",
				  (unsigned long long)(s->idle_timeout_ns / 1000000u));
			drop_client(s, i);
			continue;
		}
		next = earlier(next, expires);
	}
	return next;
}

static void *listener_main(void *arg)
{
	struct rpc_server *s = arg;
	struct pollfd pfd[POLL_FIXED_FDS + RPC_MAX_CLIENTS];
	uint64_t accept_paused_until = 0; /* after a failed accept, 0 = not paused */
	for (;;) {
		uint64_t next_idle = drop_idle_clients(s);
		if (accept_paused_until && now_ns() >= accept_paused_until)
			accept_paused_until = 0;
		pfd[0] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = accept_paused_until ? -1 : s->listener.fd,
					 .events = POLLIN};
		for (uint32_t i = 0; i < s->nclients; i++)
			pfd[POLL_FIXED_FDS + i] =
			    (struct pollfd){.fd = s->clients[i].fd,
					    .events = rpc_client_poll_events(&s->clients[i])};
		int n = poll(pfd, POLL_FIXED_FDS + s->nclients,
			     poll_timeout_ms(earlier(accept_paused_until, next_idle)));
		if (n < 0) {
			if (errno != EINTR) {
				log_error("RPC: poll failed: %s", strerror(errno));
				nanosleep(&(struct timespec){.tv_nsec = ACCEPT_RETRY_MS * 1000000L},
					  NULL);
			}
			continue;
		}
		if (pfd[0].revents)
			break;
		/* Backwards, so that the client moved into a dropped one's
		 * place has been handled already. */
		for (uint32_t i = s->nclients; i-- > 0;) {
			short revents = pfd[POLL_FIXED_FDS + i].revents;
			if (revents && !rpc_client_handle(&s->clients[i], revents, &s->ctx))
				drop_client(s, i);
		}
		if ((pfd[1].revents & POLLIN) && !accept_clients(s))
			accept_paused_until = now_ns() + ACCEPT_RETRY_MS * 1000000ull;
	}
	return NULL;
}

static void server_free(struct rpc_server *s)
{
	for (uint32_t i = 0; i < s->nclients; i++)
		rpc_client_fini(&s->clients[i]);
	/* Removes the socket file too, if it is still ours. */
	unix_listener_close(&s->listener, s->path);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free((void *)s->ctx.trackers);
	free(s->path);
	free(s);
}

static int server_alloc(const char *path, const struct rpc_context *ctx, struct rpc_server **out)
{
	struct rpc_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->listener.fd = -1;
	s->stop_fd = -1;
	s->ctx = *ctx;
	s->ctx.trackers = NULL;
	s->idle_timeout_ns =
	    (uint64_t)(ctx->idle_timeout_ms ? ctx->idle_timeout_ms : RPC_IDLE_TIMEOUT_MS) *
	    1000000u;
	s->path = strdup(path);
	struct io_tracker **trackers = calloc(ctx->num_queues + 1, sizeof(*trackers));
	if (!s->path || !trackers) {
		free(trackers);
		server_free(s);
		return -ENOMEM;
	}
	for (uint32_t q = 0; q < ctx->num_queues; q++)
		trackers[q] = ctx->trackers ? ctx->trackers[q] : NULL;
	s->ctx.trackers = trackers;
	*out = s;
	return 0;
}

int rpc_server_start(const char *path, const struct rpc_context *ctx, struct rpc_server **out,
		     struct error *err)
{
	*out = NULL;
	if (!path || !*path || !ctx || (ctx->num_queues > 0 && !ctx->trackers))
		return error_set(err, -EINVAL, "RPC server: invalid arguments");
	struct rpc_server *s;
	int ret = server_alloc(path, ctx, &s);
	if (ret < 0)
		return error_set(err, ret, "RPC server: %s", strerror(-ret));
	ret = bind_socket(s, err);
	if (ret < 0) {
		server_free(s);
		return ret;
	}
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = s->stop_fd < 0 ? -errno : thread_start(&s->thread, "ubiblk-rpc", listener_main, s);
	if (ret < 0) {
		server_free(s);
		return error_set(err, ret, "RPC server: cannot start the listener: %s",
				 strerror(-ret));
	}
	log_info("RPC server listening on %s", path);
	*out = s;
	return 0;
}

void rpc_server_stop(struct rpc_server *s)
{
	if (!s)
		return;
	uint64_t one = 1;
	while (write(s->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(s->thread, NULL);
	server_free(s);
}

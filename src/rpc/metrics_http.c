/* The metrics HTTP endpoint (metrics_listen, docs/metrics.md): GET /metrics
 * answered with rpc_metrics_text, everything else with 404 / 405 / 400.
 *
 * Its own thread and poll(2) loop, not the RPC server's: the two share
 * nothing but the read-only context, so neither kind of client can delay
 * the other. Every connection gets one deadline at accept
 * (METRICS_HTTP_TIMEOUT_MS) for the whole exchange, request and reply, so a
 * client that dribbles its request or never reads the reply is closed;
 * requests are read into a fixed buffer of METRICS_HTTP_MAX_REQUEST bytes
 * (a larger one gets 431). With METRICS_HTTP_MAX_CLIENTS connections open,
 * a new one replaces the oldest, as in the RPC server, so silent
 * connections cannot lock a scraper out. Every reply says Connection: close
 * and the connection is closed once it is sent and the client has closed its
 * side (or the deadline passed): no keep-alive to manage. */
#include "rpc/rpc_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"

#define LISTEN_BACKLOG	     16
#define ACCEPTS_PER_TURN     8
#define ACCEPT_RETRY_MS	     100
#define POLL_FIXED_FDS	     2 /* the stop eventfd and the listener */
#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct http_client {
	int fd;
	uint64_t deadline_ns;
	size_t in_len;
	char in[METRICS_HTTP_MAX_REQUEST];
	char *out; /* the whole reply once the request is complete, else NULL */
	size_t out_len;
	size_t out_sent;
	/* The reply is sent and our side shut down: what the client still
	 * sends is read and dropped until it closes, because closing with
	 * unread input would reset the connection and could destroy the
	 * reply before the client read it (a 431 for an oversized request). */
	bool draining;
};

struct metrics_http {
	struct rpc_context ctx; /* trackers points at our own copy of the array */
	int listen_fd;
	int stop_fd;
	uint16_t port;
	pthread_t thread;
	struct http_client clients[METRICS_HTTP_MAX_CLIENTS];
	uint32_t nclients;
};

static void client_close(struct http_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->out);
	c->fd = -1;
	c->out = NULL;
}

static void drop_client(struct metrics_http *h, uint32_t i)
{
	client_close(&h->clients[i]);
	h->nclients--;
	if (i != h->nclients) {
		h->clients[i] = h->clients[h->nclients];
		h->clients[h->nclients].fd = -1;
		h->clients[h->nclients].out = NULL;
	}
}

/* The reply to give: status line, headers, body. */
static void set_reply(struct http_client *c, int status, const char *reason,
		      const char *content_type, const char *extra_headers, const char *body)
{
	size_t body_len = strlen(body);
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n",
			 status, reason, content_type, body_len, extra_headers);
	c->out = malloc((size_t)n + body_len);
	if (!c->out)
		return; /* the caller drops the connection */
	memcpy(c->out, head, (size_t)n);
	memcpy(c->out + n, body, body_len);
	c->out_len = (size_t)n + body_len;
	c->out_sent = 0;
}

static void error_reply(struct http_client *c, int status, const char *reason,
			const char *extra_headers)
{
	char body[64];
	snprintf(body, sizeof(body), "%d %s\n", status, reason);
	set_reply(c, status, reason, "text/plain; charset=utf-8", extra_headers, body);
}

/* The request line and headers are in c->in (`line_end` is where the
 * request line ends): decide the reply. Only the request line matters;
 * headers are read (so the client is not reset) but ignored. */
static void answer(struct metrics_http *h, struct http_client *c, size_t line_end)
{
	char line[METRICS_HTTP_MAX_REQUEST];
	memcpy(line, c->in, line_end);
	line[line_end] = '\0';
	if (line_end > 0 && line[line_end - 1] == '\r')
		line[line_end - 1] = '\0';
	char *save = NULL;
	char *method = strtok_r(line, " ", &save);
	char *target = method ? strtok_r(NULL, " ", &save) : NULL;
	char *version = target ? strtok_r(NULL, " ", &save) : NULL;
	if (!version || strtok_r(NULL, " ", &save) || strncmp(version, "HTTP/1.", 7) != 0) {
		error_reply(c, 400, "Bad Request", "");
		return;
	}
	if (strcmp(method, "GET") != 0) {
		error_reply(c, 405, "Method Not Allowed", "Allow: GET\r\n");
		return;
	}
	target[strcspn(target, "?")] = '\0'; /* a query string is ignored */
	if (strcmp(target, "/metrics") != 0) {
		error_reply(c, 404, "Not Found", "");
		return;
	}
	char *text = rpc_metrics_text(&h->ctx);
	if (!text) {
		error_reply(c, 500, "Internal Server Error", "");
		return;
	}
	set_reply(c, 200, "OK", CONTENT_TYPE_METRICS, "", text);
	free(text);
}

/* Where the header block ends (just past the blank line), or 0. */
static size_t header_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Reads what the client sent; answers once the headers are complete.
 * False when the connection is over. */
static bool client_read(struct metrics_http *h, struct http_client *c)
{
	for (;;) {
		if (c->in_len == sizeof(c->in)) {
			error_reply(c, 431, "Request Header Fields Too Large", "");
			return c->out != NULL;
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		if (n == 0)
			return false; /* closed before a whole request: nothing to answer */
		size_t scanned_from = c->in_len > 3 ? c->in_len - 3 : 0;
		c->in_len += (size_t)n;
		if (header_end(c->in + scanned_from, c->in_len - scanned_from) == 0)
			continue;
		const char *nl = memchr(c->in, '\n', c->in_len); /* header_end found one */
		answer(h, c, nl ? (size_t)(nl - c->in) : 0);
		return c->out != NULL;
	}
}

/* Sends what it can of the reply; false once all is sent (or on error). */
static bool client_write(struct http_client *c)
{
	while (c->out_sent < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		c->out_sent += (size_t)n;
	}
	/* Everything sent: end our side, then wait for the client's end. */
	shutdown(c->fd, SHUT_WR);
	c->draining = true;
	return true;
}

/* Reads and drops input; false once the client closed (or failed). */
static bool client_drain(struct http_client *c)
{
	char sink[4096];
	for (;;) {
		ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
		if (n > 0)
			continue;
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
	}
}

static bool client_handle(struct metrics_http *h, struct http_client *c, short revents)
{
	if (c->draining)
		return client_drain(c);
	if (!c->out && (revents & (POLLIN | POLLHUP | POLLERR)) && !client_read(h, c))
		return false;
	if (c->out)
		return client_write(c);
	return !(revents & (POLLERR | POLLNVAL));
}

static uint32_t oldest_client(const struct metrics_http *h)
{
	uint32_t oldest = 0;
	for (uint32_t i = 1; i < h->nclients; i++)
		if (h->clients[i].deadline_ns < h->clients[oldest].deadline_ns)
			oldest = i;
	return oldest;
}

/* Accepts waiting connections; false when accepting failed and should pause. */
static bool accept_clients(struct metrics_http *h)
{
	for (int turn = 0; turn < ACCEPTS_PER_TURN; turn++) {
		int fd = rpc_accept_one(h->listen_fd, "metrics endpoint");
		if (fd < 0)
			return fd == -EAGAIN;
		if (h->nclients == METRICS_HTTP_MAX_CLIENTS) {
			log_debug("metrics endpoint: %u connections: closing the oldest",
				  METRICS_HTTP_MAX_CLIENTS);
			drop_client(h, oldest_client(h));
		}
		struct http_client *c = &h->clients[h->nclients++];
		c->fd = fd;
		c->in_len = 0;
		c->out = NULL;
		c->draining = false;
		c->deadline_ns = now_ns() + (uint64_t)METRICS_HTTP_TIMEOUT_MS * 1000000u;
	}
	return true;
}

/* Closes the connections past their deadline; returns the next deadline
 * (0: none). */
static uint64_t drop_late_clients(struct metrics_http *h)
{
	uint64_t now = now_ns(), next = 0;
	for (uint32_t i = h->nclients; i-- > 0;) {
		if (now >= h->clients[i].deadline_ns) {
			log_debug("metrics endpoint: connection closed: no whole exchange within "
				  "%u ms",
				  METRICS_HTTP_TIMEOUT_MS);
			drop_client(h, i);
			continue;
		}
		if (next == 0 || h->clients[i].deadline_ns < next)
			next = h->clients[i].deadline_ns;
	}
	return next;
}

static int timeout_ms(uint64_t deadline_ns)
{
	if (deadline_ns == 0)
		return -1;
	uint64_t now = now_ns();
	return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999u) / 1000000u);
}

static void *http_main(void *arg)
{
	struct metrics_http *h = arg;
	struct pollfd pfd[POLL_FIXED_FDS + METRICS_HTTP_MAX_CLIENTS];
	uint64_t accept_paused_until = 0;
	for (;;) {
		uint64_t next = drop_late_clients(h);
		if (accept_paused_until && now_ns() >= accept_paused_until)
			accept_paused_until = 0;
		if (accept_paused_until && (next == 0 || accept_paused_until < next))
			next = accept_paused_until;
		pfd[0] = (struct pollfd){.fd = h->stop_fd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = accept_paused_until ? -1 : h->listen_fd,
					 .events = POLLIN};
		for (uint32_t i = 0; i < h->nclients; i++)
			pfd[POLL_FIXED_FDS + i] = (struct pollfd){
			    .fd = h->clients[i].fd,
			    .events =
				h->clients[i].out && !h->clients[i].draining ? POLLOUT : POLLIN};
		int n = poll(pfd, POLL_FIXED_FDS + h->nclients, timeout_ms(next));
		if (n < 0) {
			if (errno != EINTR) {
				log_error("metrics endpoint: poll failed: %s", strerror(errno));
				accept_paused_until = now_ns() + ACCEPT_RETRY_MS * 1000000ull;
			}
			continue;
		}
		if (pfd[0].revents)
			break;
		/* Backwards: a dropped client's place is taken by one already
		 * handled. */
		for (uint32_t i = h->nclients; i-- > 0;) {
			short revents = pfd[POLL_FIXED_FDS + i].revents;
			if (revents && !client_handle(h, &h->clients[i], revents))
				drop_client(h, i);
		}
		if ((pfd[1].revents & POLLIN) && !accept_clients(h))
			accept_paused_until = now_ns() + ACCEPT_RETRY_MS * 1000000ull;
	}
	return NULL;
}

static void http_free(struct metrics_http *h)
{
	for (uint32_t i = 0; i < h->nclients; i++)
		client_close(&h->clients[i]);
	if (h->listen_fd >= 0)
		close(h->listen_fd);
	if (h->stop_fd >= 0)
		close(h->stop_fd);
	free((void *)h->ctx.trackers);
	free(h);
}

static int open_listener(struct metrics_http *h, const struct sockaddr *addr, uint32_t addrlen)
{
	h->listen_fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (h->listen_fd < 0)
		return -errno;
	int one = 1;
	/* A restarted backend may bind while old connections linger. */
	if (setsockopt(h->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return -errno;
	if (addr->sa_family == AF_INET6 &&
	    setsockopt(h->listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		return -errno;
	if (bind(h->listen_fd, addr, addrlen) < 0 || listen(h->listen_fd, LISTEN_BACKLOG) < 0)
		return -errno;
	struct sockaddr_storage bound;
	socklen_t len = sizeof(bound);
	if (getsockname(h->listen_fd, (struct sockaddr *)&bound, &len) < 0)
		return -errno;
	h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						    : ((struct sockaddr_in *)&bound)->sin_port);
	return 0;
}

int metrics_http_start(const struct sockaddr *addr, uint32_t addrlen, const struct rpc_context *ctx,
		       struct metrics_http **out, struct error *err)
{
	*out = NULL;
	if (!addr || !ctx || (ctx->num_queues > 0 && !ctx->trackers))
		return error_set(err, -EINVAL, "metrics endpoint: invalid arguments");
	struct metrics_http *h = calloc(1, sizeof(*h));
	struct io_tracker **trackers = calloc(ctx->num_queues + 1, sizeof(*trackers));
	if (!h || !trackers) {
		free(h);
		free(trackers);
		return error_set(err, -ENOMEM, "metrics endpoint: out of memory");
	}
	h->listen_fd = -1;
	h->stop_fd = -1;
	for (uint32_t i = 0; i < METRICS_HTTP_MAX_CLIENTS; i++)
		h->clients[i].fd = -1;
	h->ctx = *ctx;
	for (uint32_t q = 0; q < ctx->num_queues; q++)
		trackers[q] = ctx->trackers[q];
	h->ctx.trackers = trackers;
	int ret = open_listener(h, addr, addrlen);
	if (ret < 0) {
		http_free(h);
		return error_set(err, ret, "cannot listen: %s", strerror(-ret));
	}
	h->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = h->stop_fd < 0 ? -errno : thread_start(&h->thread, "ubiblk-metrics", http_main, h);
	if (ret < 0) {
		http_free(h);
		return error_set(err, ret, "metrics endpoint: cannot start its thread: %s",
				 strerror(-ret));
	}
	log_info("metrics endpoint listening on port %u (GET /metrics)", h->port);
	*out = h;
	return 0;
}

uint16_t metrics_http_port(const struct metrics_http *h)
{
	return h ? h->port : 0;
}

void metrics_http_stop(struct metrics_http *h)
{
	if (!h)
		return;
	uint64_t one = 1;
	while (write(h->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(h->thread, NULL);
	http_free(h);
}

/* One RPC connection: newline framing of requests and buffered, non-blocking
 * replies, driven by the listener thread's poll(2) loop.
 *
 * Flow control: a client is read from only when every complete line it sent
 * has been answered and less than RPC_OUTPUT_HIGH_WATER of its replies are
 * unsent. A client that sends requests but never reads replies therefore
 * stalls itself (its socket buffer fills up) and costs at most one input
 * buffer and one reply; it never blocks the listener or other clients. */
#include "rpc/rpc_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"

/* Input buffer: the longest line plus its newline. */
#define INPUT_CAPACITY (RPC_MAX_LINE + 1u)
/* An output buffer grown past this for one large reply is freed once sent. */
#define OUTPUT_KEEP_BYTES (64u * 1024u)

int rpc_client_init(struct rpc_client *c, int fd)
{
	*c = (struct rpc_client){.fd = fd, .active_ns = now_ns()};
	c->in = malloc(INPUT_CAPACITY);
	return c->in ? 0 : -ENOMEM;
}

void rpc_client_fini(struct rpc_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	*c = (struct rpc_client){.fd = -1};
}

static size_t unsent(const struct rpc_client *c)
{
	return c->out_len - c->out_sent;
}

/* Whether `in` holds a complete line not answered yet. */
static bool line_pending(const struct rpc_client *c)
{
	return memchr(c->in + c->scanned, '\n', c->in_len - c->scanned) != NULL;
}

short rpc_client_poll_events(const struct rpc_client *c)
{
	short events = 0;
	if (!c->read_eof && unsent(c) < RPC_OUTPUT_HIGH_WATER && !line_pending(c))
		events |= POLLIN;
	if (unsent(c) > 0)
		events |= POLLOUT;
	return events;
}

/* Sends what the socket takes now; false on a write error. */
static bool flush_output(struct rpc_client *c)
{
	while (unsent(c) > 0) {
		ssize_t n =
		    send(c->fd, c->out + c->out_sent, unsent(c), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n < 0) {
			log_debug("RPC client: write failed: %s", strerror(errno));
			return false;
		}
		c->out_sent += (size_t)n;
		c->active_ns = now_ns();
	}
	c->out_len = c->out_sent = 0;
	if (c->out_cap > OUTPUT_KEEP_BYTES) {
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	return true;
}

/* Queues `reply` and its newline; false when the client must be dropped. */
static bool queue_reply(struct rpc_client *c, const char *reply)
{
	size_t len = strlen(reply);
	size_t need = unsent(c) + len + 1;
	if (need > RPC_MAX_PENDING_OUTPUT) {
		log_warn("RPC client dropped: %zu bytes of replies not read", need);
		return false;
	}
	if (c->out_sent > 0) {
		memmove(c->out, c->out + c->out_sent, unsent(c));
		c->out_len = unsent(c);
		c->out_sent = 0;
	}
	if (need > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < need)
			cap *= 2;
		char *out = realloc(c->out, cap);
		if (!out) {
			log_warn("RPC client dropped: no memory for a %zu-byte reply", len);
			return false;
		}
		c->out = out;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, reply, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
	return true;
}

/* Answers one line (untrimmed, without its newline); false to drop. */
static bool answer_line(struct rpc_client *c, const char *line, size_t len,
			const struct rpc_context *ctx)
{
	line = rpc_trim_line(line, &len);
	if (len == 0)
		return true;
	char *reply = rpc_reply(ctx, line, len);
	if (!reply) {
		log_warn("RPC client dropped: no memory to build a reply");
		return false;
	}
	bool ok = queue_reply(c, reply);
	free(reply);
	return ok && (unsent(c) < RPC_OUTPUT_HIGH_WATER || flush_output(c));
}

/* Answers complete lines (and, after EOF, the last unterminated one) while
 * the output is below the high-water mark; false to drop the client. */
static bool answer_lines(struct rpc_client *c, const struct rpc_context *ctx)
{
	size_t start = 0;
	bool ok = true;
	while (ok && unsent(c) < RPC_OUTPUT_HIGH_WATER) {
		char *nl = memchr(c->in + c->scanned, '\n', c->in_len - c->scanned);
		if (!nl) {
			c->scanned = c->in_len;
			if (c->read_eof && c->in_len > start) {
				ok = answer_line(c, c->in + start, c->in_len - start, ctx);
				start = c->in_len;
			}
			break;
		}
		size_t end = (size_t)(nl - c->in);
		c->active_ns = now_ns();
		ok = answer_line(c, c->in + start, end - start, ctx);
		start = end + 1;
		c->scanned = start;
	}
	if (start > 0) {
		memmove(c->in, c->in + start, c->in_len - start);
		c->in_len -= start;
		c->scanned -= start;
	}
	return ok;
}

/* One read; false on an error or a line over the limit. */
static bool read_input(struct rpc_client *c)
{
	ssize_t n;
	do
		n = recv(c->fd, c->in + c->in_len, INPUT_CAPACITY - c->in_len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return true;
	if (n < 0) {
		log_debug("RPC client: read failed: %s", strerror(errno));
		return false;
	}
	if (n == 0)
		c->read_eof = true;
	c->in_len += (size_t)n;
	/* A full buffer without a newline can only become a longer line. */
	if (c->in_len == INPUT_CAPACITY && !line_pending(c)) {
		log_warn("RPC client dropped: request line longer than %u bytes", RPC_MAX_LINE);
		return false;
	}
	return true;
}

bool rpc_client_handle(struct rpc_client *c, short revents, const struct rpc_context *ctx)
{
	if (revents & POLLNVAL)
		return false;
	/* Read only when the client is not held back (see the top of the
	 * file); an error or hang-up while it is shows up when sending. */
	bool wants_input = rpc_client_poll_events(c) & POLLIN;
	if ((revents & (POLLIN | POLLHUP | POLLERR)) && wants_input && !read_input(c))
		return false;
	/* Answering and sending alternate until neither makes progress: sent
	 * output may let waiting lines be answered. */
	for (;;) {
		size_t before_in = c->in_len, before_out = unsent(c);
		if (!answer_lines(c, ctx) || !flush_output(c))
			return false;
		if (c->in_len == before_in && unsent(c) == before_out)
			break;
	}
	if (c->read_eof && c->in_len == 0 && unsent(c) == 0)
		return false;
	return true;
}

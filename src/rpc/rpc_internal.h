/* What the files of the RPC server share: rpc_commands.c (one request line
 * in, one JSON reply out), rpc_client.c (one connection: line framing and
 * buffered non-blocking replies) and rpc_server.c (the socket and the
 * listener thread). */
#ifndef UBIBLK_RPC_INTERNAL_H
#define UBIBLK_RPC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"

/* While a client has this much of its replies unsent, its further requests
 * wait (it is not read from), so a client that never reads costs a bounded
 * amount of memory and blocks nobody. */
#define RPC_OUTPUT_HIGH_WATER (64u * 1024u)
/* A client whose unsent replies grow beyond this (one huge reply) is dropped. */
#define RPC_MAX_PENDING_OUTPUT (16u * 1024u * 1024u)

/* A growing text buffer (rpc_text.c): start with cap > 0 and buf malloc'd
 * to cap; after a failed allocation `failed` is set and further printing is
 * ignored, so a writer checks once at the end. */
struct text {
	char *buf;
	size_t len;
	size_t cap;
	bool failed;
};

void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One waiting connection on a listening socket, non-blocking and
 * close-on-exec (rpc_server.c; the RPC socket and the metrics endpoint):
 * its fd, -EAGAIN when none is waiting, or another negative errno when
 * accepting failed (logged as "<what>: cannot accept a connection") and the
 * caller should pause. EINTR and ECONNABORTED are retried. */
int rpc_accept_one(int listen_fd, const char *what);

/* The compact JSON reply (no newline) to one request line, already trimmed
 * and not empty; malloc'd, NULL only when out of memory. */
char *rpc_reply(const struct rpc_context *ctx, const char *line, size_t len);
/* A request line (without its newline) less the white space around it: the
 * start of what is left, its length in *len (0 for a blank line, which gets
 * no reply). */
const char *rpc_trim_line(const char *line, size_t *len);

struct rpc_client {
	int fd;
	char *in; /* RPC_MAX_LINE + 1 bytes: one line and its newline */
	size_t in_len;
	size_t scanned; /* bytes of `in` known to hold no newline */
	char *out;
	size_t out_cap;
	size_t out_len;
	size_t out_sent;
	bool read_eof;
	/* now_ns() when a request line last came in or reply bytes last went
	 * out: the server closes a client idle for longer than its timeout. */
	uint64_t active_ns;
};

/* Takes ownership of fd (non-blocking); -ENOMEM leaves fd to the caller. */
int rpc_client_init(struct rpc_client *c, int fd);
/* Closes the connection. */
void rpc_client_fini(struct rpc_client *c);
/* The poll(2) events the client waits for. */
short rpc_client_poll_events(const struct rpc_client *c);
/* Reads, answers and writes what it can; false when the connection is over
 * (EOF with everything answered, an error, a line over RPC_MAX_LINE, or a
 * client that does not read its replies). */
bool rpc_client_handle(struct rpc_client *c, short revents, const struct rpc_context *ctx);

#endif

/* The RPC socket (newline-delimited JSON over a Unix socket), reporting the
 * per-queue I/O trackers (io_tracker/io_tracker.h), the stripe states and
 * the fetch worker. See docs/rpc.md.
 *
 * Commands: version, status, queues (in-flight requests per queue, offsets
 * and lengths in sectors), stats (cumulative counters per queue and of the
 * fetch worker). Several clients at once; lines longer than RPC_MAX_LINE end
 * the connection; bad JSON is answered with {"error":"invalid request: ..."}.
 * The server never blocks the I/O path: handlers only read atomics. */
#ifndef UBIBLK_RPC_H
#define UBIBLK_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch/fetch.h"
#include "io_tracker/io_tracker.h"
#include "meta/meta.h"

#define RPC_MAX_LINE	(64u * 1024u)
#define RPC_MAX_CLIENTS 64u
/* A client that neither completes a request line nor takes a reply for this
 * long is closed, so idle connections cannot hold every place. */
#define RPC_IDLE_TIMEOUT_MS 30000u

/* Copied by rpc_server_start (the tracker array too); the trackers, stripe
 * state and worker must outlive the server. */
struct rpc_context {
	struct io_tracker *const *trackers; /* num_queues entries (may be 0), each may be NULL */
	uint32_t num_queues;
	struct stripe_state *stripes; /* NULL: status is null */
	struct fetch_worker *worker;  /* NULL: no fetch stats */
	uint32_t idle_timeout_ms;     /* 0: RPC_IDLE_TIMEOUT_MS */
};

/* The client side (rpc_call.c), for tools that poll a backend: connects to
 * the socket at path, sends {"command":COMMAND} (a plain name, no quotes or
 * backslashes), and returns in *reply the first reply line without its
 * newline (malloc'd; the caller frees it). Never waits longer than
 * timeout_ms in all, so a hung or vanished server cannot stall the caller.
 * Returns 0, or -errno with err saying why (*reply is then NULL). */
int rpc_call(const char *path, const char *command, unsigned timeout_ms, char **reply,
	     struct error *err);

struct rpc_server;

/* Binds (replacing a stale socket file, never another kind of file), chmod
 * 0660, starts the listener thread. Returns 0, or -errno with err saying
 * why. Called by the thread that will call rpc_server_stop. */
int rpc_server_start(const char *path, const struct rpc_context *ctx, struct rpc_server **out,
		     struct error *err);
/* Closes every connection, removes the socket, joins the thread. */
void rpc_server_stop(struct rpc_server *s);

#endif

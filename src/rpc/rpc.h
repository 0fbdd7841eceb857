/* The RPC socket (newline-delimited JSON over a Unix socket), reporting the
 * per-queue I/O trackers (io_tracker/io_tracker.h), the stripe states and
 * the fetch worker. See docs/rpc.md.
 *
 * Commands: version, status, queues (in-flight requests per queue, offsets
 * and lengths in sectors), stats (cumulative counters per queue and of the
 * fetch worker), metrics (the Prometheus text of rpc_metrics_text, which
 * the optional HTTP endpoint below serves too; docs/metrics.md). Several clients at once; lines
 * longer than RPC_MAX_LINE end the connection; bad JSON is answered with {"error":"invalid request:
 * ..."}. The server never blocks the I/O path: handlers only read atomics. */
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
	const char *xts_engine;	      /* for ubiblk_build_info; NULL: "unknown"; static */
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

/* ---- metrics (docs/metrics.md) ---- */

/* The Prometheus text exposition (format 0.0.4) of everything ctx reaches:
 * per-queue ops, bytes, in-flight and duration histograms, errors by kind,
 * stripe states, fetch counters and duration histogram, build info.
 * malloc'd, NUL-terminated; NULL only when out of memory. Any thread: it
 * only reads atomics. The `metrics` command and the HTTP endpoint both
 * serve this text. */
char *rpc_metrics_text(const struct rpc_context *ctx);

/* The HTTP endpoint (metrics_listen): GET /metrics on a loopback TCP
 * address, served by its own thread (poll(2), like the RPC server), so a
 * slow scraper never delays the RPC socket. At most METRICS_HTTP_MAX_CLIENTS
 * connections; a request must arrive whole within METRICS_HTTP_TIMEOUT_MS
 * and fit in METRICS_HTTP_MAX_REQUEST bytes; every reply closes the
 * connection. */
#define METRICS_HTTP_MAX_CLIENTS 16u
#define METRICS_HTTP_MAX_REQUEST 8192u
#define METRICS_HTTP_TIMEOUT_MS	 5000u

struct metrics_http;
struct sockaddr;

/* Binds addr (the caller checked it is loopback: config.h
 * metrics_listen_parse), listens and starts the thread. ctx is copied like
 * rpc_server_start's. Returns 0 or -errno with err saying why. */
int metrics_http_start(const struct sockaddr *addr, uint32_t addrlen, const struct rpc_context *ctx,
		       struct metrics_http **out, struct error *err);
/* The port it listens on (useful with port 0). */
uint16_t metrics_http_port(const struct metrics_http *h);
/* Closes every connection and the socket, joins the thread. NULL is fine. */
void metrics_http_stop(struct metrics_http *h);

#endif

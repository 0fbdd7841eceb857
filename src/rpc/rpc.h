/* The RPC socket (newline-delimited JSON over a Unix socket) and the per-queue
 * I/O tracking it reports. See docs/rpc.md.
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
#include "meta/meta.h"

#define RPC_MAX_LINE	(64u * 1024u)
#define RPC_MAX_CLIENTS 64u

/* ---- I/O tracking: written by one queue thread, read by the RPC thread ---- */

enum io_kind { IO_KIND_NONE = 0, IO_KIND_READ, IO_KIND_WRITE, IO_KIND_FLUSH };

struct io_tracker; /* one per queue: `slots` in-flight entries plus counters */

struct io_tracker *io_tracker_create(uint32_t slots);
void io_tracker_destroy(struct io_tracker *t);
/* Record that `slot` holds a request (sector/count ignored for flush), and
 * count it in the cumulative stats. Slots >= the tracker size are counted but
 * not shown. Only the queue's own thread calls begin/end (counters are
 * updated without locked instructions); `t` may be NULL (not tracked). */
void io_tracker_begin(struct io_tracker *t, uint32_t slot, enum io_kind kind, uint64_t sector,
		      uint32_t count);
void io_tracker_end(struct io_tracker *t, uint32_t slot);

/* Readers (any thread, concurrently with the queue thread). With a NULL
 * tracker the snapshot is empty and the counters are zero. */
struct io_tracker_entry {
	uint32_t slot;
	enum io_kind kind;
	uint64_t sector; /* 0 for a flush */
	uint32_t count;	 /* sectors; 0 for a flush */
};

struct io_tracker_counters {
	uint64_t bytes_read; /* sectors x 512, counted at submission */
	uint64_t bytes_written;
	uint64_t read_ops;
	uint64_t write_ops;
	uint64_t flush_ops;
};

uint32_t io_tracker_slot_count(const struct io_tracker *t);
/* The occupied slots in slot order, at most `max` of them; returns how many
 * were written. Each entry is one request as it was submitted (never a mix
 * of two); the set as a whole is not one instant. */
size_t io_tracker_snapshot(const struct io_tracker *t, struct io_tracker_entry *out, size_t max);
void io_tracker_read_counters(const struct io_tracker *t, struct io_tracker_counters *out);

/* ---- the server ---- */

/* Copied by rpc_server_start (the tracker array too); the trackers, stripe
 * state and worker must outlive the server. */
struct rpc_context {
	struct io_tracker *const *trackers; /* num_queues entries (may be 0), each may be NULL */
	uint32_t num_queues;
	struct stripe_state *stripes; /* NULL: status is null */
	struct fetch_worker *worker;  /* NULL: no fetch stats */
};

struct rpc_server;

/* Binds (replacing a stale socket file, never another kind of file), chmod
 * 0660, starts the listener thread. */
int rpc_server_start(const char *path, const struct rpc_context *ctx, struct rpc_server **out,
		     char *err, size_t err_len);
/* Closes every connection, removes the socket, joins the thread. */
void rpc_server_stop(struct rpc_server *s);

#endif

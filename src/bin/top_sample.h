/* One reading of a disk's counters, taken over its RPC socket: from the
 * `metrics` command when the backend has it (counters, in-flight, latency
 * histograms, stripes), else from `stats`, `status` and `queues` (what older
 * backends answer: counters, in-flight and stripes, no latency). */
#ifndef UBIBLK_BIN_TOP_SAMPLE_H
#define UBIBLK_BIN_TOP_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

enum top_op { TOP_READ, TOP_WRITE, TOP_FLUSH, TOP_NUM_OPS };

/* Histogram buckets kept per queue and op: the contract has 18 finite
 * bounds plus +Inf; a few more are tolerated. */
#define TOP_MAX_BUCKETS 32
/* More queues than this in a reply is refused as nonsense. */
#define TOP_MAX_QUEUES 1024

struct top_queue_sample {
	uint64_t ops[TOP_NUM_OPS];
	uint64_t bytes[TOP_FLUSH]; /* read and write */
	uint64_t in_flight;
	/* Cumulative counts (le = bounds[i]) per op; metrics only. */
	uint64_t buckets[TOP_NUM_OPS][TOP_MAX_BUCKETS];
};

struct top_sample {
	uint64_t taken_ns; /* now_ns() when the reading completed */
	bool from_metrics; /* false: stats/status/queues, no latency */
	uint32_t num_queues;
	struct top_queue_sample *queues;
	/* Upper bounds of the latency buckets in seconds, ascending, the last
	 * one +Inf; num_bounds 0 when there is no latency histogram. */
	double bounds[TOP_MAX_BUCKETS];
	uint32_t num_bounds;
	bool has_stripes; /* the disk has metadata (lazy fetching) */
	uint64_t stripes_total, stripes_source, stripes_fetched, stripes_failed;
	bool has_fetch; /* a background fetch worker runs */
	uint64_t fetch_bytes;
};

/* How a disk is asked, kept across samples. */
enum top_protocol { TOP_PROTOCOL_UNKNOWN, TOP_PROTOCOL_METRICS, TOP_PROTOCOL_STATS };

/* Reads the disk behind the RPC socket at path into *out (freed with
 * top_sample_free, also after a failure). *protocol says which commands to
 * use; UNKNOWN tries `metrics` and settles on STATS when the backend does
 * not know it. Every RPC call gives up after timeout_ms. Returns 0, or
 * -errno with err saying why (unreachable, bad reply). */
int top_sample_take(const char *path, enum top_protocol *protocol, unsigned timeout_ms,
		    struct top_sample *out, struct error *err);
void top_sample_free(struct top_sample *s);

/* The `metrics` text (the string inside the reply) as a sample, without the
 * socket: what top_sample_take does with it, and what the top-metrics fuzz
 * target drives. Returns 0, or -EINVAL / -ENOMEM with err saying why. */
int top_sample_from_metrics(const char *text, struct top_sample *out, struct error *err);

#endif

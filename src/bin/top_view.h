/* What ubiblk-top shows of a disk: rates between two samples, latency
 * percentiles from the histogram bucket deltas, hydration progress with its
 * time-left estimate. Pure arithmetic over two top_samples. */
#ifndef UBIBLK_BIN_TOP_VIEW_H
#define UBIBLK_BIN_TOP_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "top_sample.h"

struct top_rates {
	double iops[TOP_NUM_OPS];	    /* per second */
	double bytes_per_second[TOP_FLUSH]; /* read and write */
	uint64_t in_flight;		    /* in the newer sample */
	/* Latency over every request (read, write, flush) completed in the
	 * interval: has_latency when the backend reports histograms;
	 * latency_ops the requests counted; p50/p99 in seconds, the upper
	 * bound of the bucket holding that rank (a quantile in the +Inf
	 * bucket reads as the largest finite bound, as Prometheus'
	 * histogram_quantile does), valid when latency_ops > 0. */
	bool has_latency;
	uint64_t latency_ops;
	double p50, p99;
};

struct top_hydration {
	uint64_t total, source, fetched, failed;
	double percent;		   /* fetched of source; 100 when nothing has a source */
	double stripes_per_second; /* fetched stripes per second over the interval */
	double bytes_per_second;   /* fetched bytes per second (0 without a fetch worker) */
	/* Seconds until every stripe with a source that has not failed is
	 * fetched at the current rate; 0 when done, negative when unknown (no
	 * progress in the interval). */
	double eta_seconds;
};

struct top_view {
	double interval_seconds;
	bool has_latency;
	struct top_rates total;
	uint32_t num_queues;
	struct top_rates *queues; /* num_queues, malloc'd */
	bool has_hydration;
	struct top_hydration hydration;
};

/* The view from `older` to `newer` (newer taken later; counters that went
 * backwards, after a backend restart, count as no change). Returns 0 or
 * -ENOMEM. */
int top_view_compute(const struct top_sample *older, const struct top_sample *newer,
		     struct top_view *out);
void top_view_free(struct top_view *v);

#endif

/* The metrics as Prometheus text (exposition format 0.0.4): the one
 * renderer behind the `metrics` RPC command and the HTTP endpoint. The
 * families, labels and bucket bounds are a contract with ubiblk-top and
 * with operators' dashboards (docs/metrics.md): change them only together.
 *
 * Like every RPC handler it only reads atomics (trackers, stripe state,
 * fetch statistics): rendering never waits for the I/O path. */
#include "rpc/rpc_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define INITIAL_CAPACITY 8192u

static const char *const op_names[] = {
    [IO_KIND_READ] = "read",
    [IO_KIND_WRITE] = "write",
    [IO_KIND_FLUSH] = "flush",
};

static const char *const error_names[IO_ERROR_KINDS] = {
    [IO_ERROR_IO] = "io",
    [IO_ERROR_FAILED_STRIPE] = "failed_stripe",
    [IO_ERROR_BAD_REQUEST] = "bad_request",
};

static void family(struct text *out, const char *name, const char *type, const char *help)
{
	text_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Nanoseconds as exact decimal seconds. */
static void seconds(struct text *out, uint64_t ns)
{
	text_printf(out, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
}

/* A bucket's upper bound as Prometheus clients print it: 8e-06, 1.6e-05,
 * ..., 0.000128, ..., 1.048576 (%g keeps the shortest form of these exact
 * decimals). */
static void bucket_bound(char *buf, size_t size, unsigned k)
{
	snprintf(buf, size, "%.9g", (double)((uint64_t)DURATION_BUCKET_BASE_NS << k) / 1e9);
}

/* The _bucket, _sum and _count lines of one histogram. `labels` is the
 * label list without braces ("" for none); buckets[nfinite] is the
 * overflow. */
static void histogram(struct text *out, const char *name, const char *labels,
		      const uint64_t *buckets, unsigned nfinite, uint64_t sum_ns)
{
	const char *sep = labels[0] ? "," : "";
	uint64_t cumulative = 0;
	char bound[32];
	for (unsigned k = 0; k < nfinite; k++) {
		cumulative += buckets[k];
		bucket_bound(bound, sizeof(bound), k);
		text_printf(out, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels, sep, bound,
			    cumulative);
	}
	cumulative += buckets[nfinite];
	text_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cumulative);
	const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
	text_printf(out, "%s_sum%s%s%s ", name, open, labels, close);
	seconds(out, sum_ns);
	text_printf(out, "\n%s_count%s%s%s %" PRIu64 "\n", name, open, labels, close, cumulative);
}

struct queue_sample {
	struct io_tracker_counters counters;
	struct io_tracker_metrics metrics;
};

static void queue_families(struct text *out, const struct queue_sample *q, uint32_t n)
{
	family(out, "ubiblk_queue_ops_total", "counter",
	       "Guest requests submitted to the device, by queue and kind.");
	for (uint32_t i = 0; i < n; i++) {
		const struct io_tracker_counters *c = &q[i].counters;
		text_printf(out,
			    "ubiblk_queue_ops_total{queue=\"%u\",op=\"read\"} %" PRIu64 "\n"
			    "ubiblk_queue_ops_total{queue=\"%u\",op=\"write\"} %" PRIu64 "\n"
			    "ubiblk_queue_ops_total{queue=\"%u\",op=\"flush\"} %" PRIu64 "\n",
			    i, c->read_ops, i, c->write_ops, i, c->flush_ops);
	}
	family(out, "ubiblk_queue_bytes_total", "counter",
	       "Bytes of the guest reads and writes submitted to the device, by queue.");
	for (uint32_t i = 0; i < n; i++) {
		const struct io_tracker_counters *c = &q[i].counters;
		text_printf(out,
			    "ubiblk_queue_bytes_total{queue=\"%u\",op=\"read\"} %" PRIu64 "\n"
			    "ubiblk_queue_bytes_total{queue=\"%u\",op=\"write\"} %" PRIu64 "\n",
			    i, c->bytes_read, i, c->bytes_written);
	}
	family(out, "ubiblk_queue_in_flight", "gauge",
	       "Guest reads, writes and flushes at the device now, by queue.");
	for (uint32_t i = 0; i < n; i++)
		text_printf(out, "ubiblk_queue_in_flight{queue=\"%u\"} %u\n", i,
			    q[i].metrics.in_flight);
	family(out, "ubiblk_queue_request_duration_seconds", "histogram",
	       "Time from submission to the device until completion, by queue and kind.");
	for (uint32_t i = 0; i < n; i++) {
		for (int kind = IO_KIND_READ; kind <= IO_KIND_FLUSH; kind++) {
			const struct io_tracker_histogram *h = &q[i].metrics.duration[kind];
			char labels[64];
			snprintf(labels, sizeof(labels), "queue=\"%u\",op=\"%s\"", i,
				 op_names[kind]);
			histogram(out, "ubiblk_queue_request_duration_seconds", labels, h->buckets,
				  IO_TRACKER_BUCKETS, h->sum_ns);
		}
	}
}

static void error_family(struct text *out, const struct queue_sample *q, uint32_t n)
{
	family(out, "ubiblk_errors_total", "counter",
	       "Guest requests completed with an error, by kind: io (the device failed), "
	       "failed_stripe (a stripe that could not be fetched), bad_request (malformed or "
	       "unsupported).");
	for (int e = 0; e < IO_ERROR_KINDS; e++) {
		uint64_t total = 0;
		for (uint32_t i = 0; i < n; i++)
			total += q[i].metrics.errors[e];
		text_printf(out, "ubiblk_errors_total{kind=\"%s\"} %" PRIu64 "\n", error_names[e],
			    total);
	}
}

static void stripe_family(struct text *out, struct stripe_state *stripes)
{
	if (!stripes)
		return;
	uint64_t total, source, fetched;
	stripe_state_counts(stripes, &total, &source, &fetched);
	family(out, "ubiblk_stripes", "gauge",
	       "Stripes of the disk: total, with source data, fetched from the source, failed "
	       "(given up on until a restart).");
	text_printf(out,
		    "ubiblk_stripes{state=\"total\"} %" PRIu64 "\n"
		    "ubiblk_stripes{state=\"source\"} %" PRIu64 "\n"
		    "ubiblk_stripes{state=\"fetched\"} %" PRIu64 "\n"
		    "ubiblk_stripes{state=\"failed\"} %" PRIu64 "\n",
		    total, source, fetched, stripe_state_failed_count(stripes));
}

static void counter(struct text *out, const char *name, const char *help, uint64_t value)
{
	family(out, name, "counter", help);
	text_printf(out, "%s %" PRIu64 "\n", name, value);
}

static void fetch_families(struct text *out, struct fetch_worker *worker)
{
	if (!worker)
		return;
	struct fetch_stats s;
	fetch_worker_stats(worker, &s);
	counter(out, "ubiblk_fetch_stripes_fetched_total",
		"Stripes copied from the source and recorded as fetched.", s.stripes_fetched);
	counter(out, "ubiblk_fetch_bytes_total", "Bytes of source data in the fetched stripes.",
		s.bytes_fetched);
	counter(out, "ubiblk_fetch_failures_total", "Failed fetch attempts, retries included.",
		s.fetch_failures);
	counter(out, "ubiblk_fetch_stripes_failed_total",
		"Stripes given up on after their retries.", s.stripes_failed);
	family(out, "ubiblk_fetch_duration_seconds", "histogram",
	       "Time from the start of a stripe's successful fetch attempt until its data was "
	       "flushed to the disk.");
	histogram(out, "ubiblk_fetch_duration_seconds", "", s.fetch_latency_buckets,
		  FETCH_DURATION_BUCKETS, s.fetch_latency_ns_total);
}

/* A label value with \, " and newlines escaped, as the format wants. */
static void label_value(struct text *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			text_printf(out, "\\%c", *v);
		else if (*v == '\n')
			text_printf(out, "\\n");
		else
			text_printf(out, "%c", *v);
	}
}

static void build_info(struct text *out, const char *xts_engine)
{
	family(out, "ubiblk_build_info", "gauge", "The running version; always 1.");
	text_printf(out, "ubiblk_build_info{version=\"");
	label_value(out, UBIBLK_VERSION);
	text_printf(out, "\",xts_engine=\"");
	label_value(out, xts_engine ? xts_engine : "unknown");
	text_printf(out, "\"} 1\n");
}

char *rpc_metrics_text(const struct rpc_context *ctx)
{
	struct text out = {.cap = INITIAL_CAPACITY};
	struct queue_sample *q = calloc(ctx->num_queues ? ctx->num_queues : 1, sizeof(*q));
	out.buf = malloc(out.cap);
	if (!out.buf || !q) {
		free(out.buf);
		free(q);
		return NULL;
	}
	out.buf[0] = '\0';
	/* Each queue is read once, so its families agree with each other; the
	 * histograms (counted at completion) before the ops (counted at
	 * submission), so a histogram's count never exceeds its ops. */
	for (uint32_t i = 0; i < ctx->num_queues; i++) {
		io_tracker_read_metrics(ctx->trackers[i], &q[i].metrics);
		io_tracker_read_counters(ctx->trackers[i], &q[i].counters);
	}
	queue_families(&out, q, ctx->num_queues);
	error_family(&out, q, ctx->num_queues);
	stripe_family(&out, ctx->stripes);
	fetch_families(&out, ctx->worker);
	build_info(&out, ctx->xts_engine);
	free(q);
	if (out.failed) {
		free(out.buf);
		return NULL;
	}
	return out.buf;
}

/* The report of a run, as text for people or as one JSON object for
 * scripts. Both carry the same numbers; JSON keeps full precision. */
#include "bench/bench.h"

#include <linux/virtio_ring.h>
#include <stdio.h>

#define NS_PER_US 1000.0

struct rates {
	double iops, mb_per_s;
};

static struct rates rates_of(uint64_t ios, uint64_t bytes, double seconds)
{
	struct rates r = {0, 0};
	if (seconds > 0) {
		r.iops = (double)ios / seconds;
		r.mb_per_s = (double)bytes / seconds / 1e6;
	}
	return r;
}

static bool has_feature(const struct bench_report *rep, unsigned bit)
{
	return (rep->features >> bit) & 1u;
}

int bench_exit_status(const struct bench_report *report)
{
	if (report->blocks_mismatched || report->io_errors)
		return 1;
	switch (report->abort) {
	case BENCH_COMPLETED:
		return 0;
	case BENCH_INTERRUPTED:
		return 4;
	default:
		return 3;
	}
}

const char *bench_abort_name(enum bench_abort abort)
{
	switch (abort) {
	case BENCH_COMPLETED:
		return "completed";
	case BENCH_INTERRUPTED:
		return "interrupted";
	case BENCH_BACKEND_LOST:
		return "backend_lost";
	case BENCH_BACKEND_HUNG:
		return "backend_hung";
	case BENCH_PROTOCOL:
		return "protocol_error";
	case BENCH_FAILED:
		return "failed";
	}
	return "unknown";
}

static void print_text_direction(const char *name, const struct bench_direction *d, double seconds)
{
	if (d->ios == 0)
		return;
	struct rates r = rates_of(d->ios, d->bytes, seconds);
	const struct latency_histogram *h = &d->latency;
	printf("%-6s ios=%llu iops=%.0f bw=%.1fMB/s lat(us): mean=%.1f p50=%.1f p99=%.1f "
	       "p99.9=%.1f min=%.1f max=%.1f\n",
	       name, (unsigned long long)d->ios, r.iops, r.mb_per_s,
	       latency_histogram_mean(h) / NS_PER_US,
	       (double)latency_histogram_percentile(h, 50) / NS_PER_US,
	       (double)latency_histogram_percentile(h, 99) / NS_PER_US,
	       (double)latency_histogram_percentile(h, 99.9) / NS_PER_US,
	       (double)h->min_ns / NS_PER_US, (double)h->max_ns / NS_PER_US);
}

void bench_report_print_text(const struct bench_options *o, const struct bench_report *rep)
{
	printf("ubiblk-bench %s: bs=%u iodepth=%u queues=%u queue-size=%u completion=%s "
	       "event-idx=%s indirect=%s seed=%llu\n",
	       bench_mode_name(rep->mode), rep->block_size, o->iodepth, o->queues, rep->queue_size,
	       o->wait == BENCH_WAIT_POLL ? "poll" : "event",
	       has_feature(rep, VIRTIO_RING_F_EVENT_IDX) ? "on" : "off",
	       has_feature(rep, VIRTIO_RING_F_INDIRECT_DESC) ? "on" : "off",
	       (unsigned long long)rep->seed);
	printf("device: %llu bytes, %u queues, features %#llx, protocol features %#llx; range "
	       "%llu+%llu\n",
	       (unsigned long long)rep->capacity_bytes, rep->device_queues,
	       (unsigned long long)rep->features, (unsigned long long)rep->protocol_features,
	       (unsigned long long)rep->range_offset,
	       (unsigned long long)(rep->range_blocks * rep->block_size));
	print_text_direction("read", &rep->read, rep->elapsed_s);
	print_text_direction("write", &rep->write, rep->elapsed_s);
	struct rates total = rates_of(rep->read.ios + rep->write.ios,
				      rep->read.bytes + rep->write.bytes, rep->elapsed_s);
	printf("total  iops=%.0f bw=%.1fMB/s in %.3f s; kicks=%llu interrupts=%llu flushes=%llu "
	       "io-errors=%llu\n",
	       total.iops, total.mb_per_s, rep->elapsed_s, (unsigned long long)rep->kicks,
	       (unsigned long long)rep->interrupts_waited, (unsigned long long)rep->flushes,
	       (unsigned long long)rep->io_errors);
	if (rep->mode == BENCH_VERIFY)
		printf("verify %s: %llu blocks written, %llu checked, %llu mismatched (%llu "
		       "sectors)%s\n",
		       bench_verify_phase_name(o->verify_phase),
		       (unsigned long long)rep->blocks_written,
		       (unsigned long long)rep->blocks_checked,
		       (unsigned long long)rep->blocks_mismatched,
		       (unsigned long long)rep->sectors_mismatched,
		       rep->blocks_mismatched ? " -- FAILED" : "");
	if (rep->abort != BENCH_COMPLETED)
		printf("run ended early: %s\n", bench_abort_name(rep->abort));
}

static void print_json_string(const char *s)
{
	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_json_direction(const char *name, const struct bench_direction *d, double seconds)
{
	struct rates r = rates_of(d->ios, d->bytes, seconds);
	const struct latency_histogram *h = &d->latency;
	printf("\"%s\":{\"ios\":%llu,\"bytes\":%llu,\"iops\":%.1f,\"mb_s\":%.3f,\"lat_us\":{"
	       "\"mean\":%.3f,\"min\":%.3f,\"max\":%.3f,\"p50\":%.3f,\"p99\":%.3f,\"p99.9\":%."
	       "3f}}",
	       name, (unsigned long long)d->ios, (unsigned long long)d->bytes, r.iops, r.mb_per_s,
	       latency_histogram_mean(h) / NS_PER_US,
	       h->count ? (double)h->min_ns / NS_PER_US : 0.0, (double)h->max_ns / NS_PER_US,
	       (double)latency_histogram_percentile(h, 50) / NS_PER_US,
	       (double)latency_histogram_percentile(h, 99) / NS_PER_US,
	       (double)latency_histogram_percentile(h, 99.9) / NS_PER_US);
}

void bench_report_print_json(const struct bench_options *o, const struct bench_report *rep)
{
	printf("{\"mode\":\"%s\",\"socket\":", bench_mode_name(rep->mode));
	print_json_string(o->socket_path);
	printf(",\"block_size\":%u,\"iodepth\":%u,\"queues\":%u,\"queue_size\":%u,"
	       "\"completion\":\"%s\",\"event_idx\":%s,\"indirect\":%s,\"seed\":%llu,",
	       rep->block_size, o->iodepth, o->queues, rep->queue_size,
	       o->wait == BENCH_WAIT_POLL ? "poll" : "event",
	       has_feature(rep, VIRTIO_RING_F_EVENT_IDX) ? "true" : "false",
	       has_feature(rep, VIRTIO_RING_F_INDIRECT_DESC) ? "true" : "false",
	       (unsigned long long)rep->seed);
	printf("\"device\":{\"capacity_bytes\":%llu,\"queues\":%u,\"features\":\"%#llx\","
	       "\"protocol_features\":\"%#llx\"},",
	       (unsigned long long)rep->capacity_bytes, rep->device_queues,
	       (unsigned long long)rep->features, (unsigned long long)rep->protocol_features);
	printf("\"range\":{\"offset\":%llu,\"size\":%llu,\"blocks\":%llu},\"elapsed_s\":%.6f,",
	       (unsigned long long)rep->range_offset,
	       (unsigned long long)(rep->range_blocks * rep->block_size),
	       (unsigned long long)rep->range_blocks, rep->elapsed_s);
	print_json_direction("read", &rep->read, rep->elapsed_s);
	putchar(',');
	print_json_direction("write", &rep->write, rep->elapsed_s);
	struct rates total = rates_of(rep->read.ios + rep->write.ios,
				      rep->read.bytes + rep->write.bytes, rep->elapsed_s);
	printf(",\"total\":{\"ios\":%llu,\"iops\":%.1f,\"mb_s\":%.3f},\"flushes\":%llu,"
	       "\"io_errors\":%llu,\"kicks\":%llu,\"interrupts\":%llu,",
	       (unsigned long long)(rep->read.ios + rep->write.ios), total.iops, total.mb_per_s,
	       (unsigned long long)rep->flushes, (unsigned long long)rep->io_errors,
	       (unsigned long long)rep->kicks, (unsigned long long)rep->interrupts_waited);
	if (rep->mode == BENCH_VERIFY) {
		printf("\"verify\":{\"phase\":\"%s\",\"state_file\":",
		       bench_verify_phase_name(o->verify_phase));
		print_json_string(o->verify_state_path);
		printf(",\"blocks_written\":%llu,\"blocks_checked\":%llu,"
		       "\"blocks_mismatched\":%llu,\"sectors_mismatched\":%llu},",
		       (unsigned long long)rep->blocks_written,
		       (unsigned long long)rep->blocks_checked,
		       (unsigned long long)rep->blocks_mismatched,
		       (unsigned long long)rep->sectors_mismatched);
	}
	printf("\"outcome\":\"%s\",\"exit_status\":%d}\n", bench_abort_name(rep->abort),
	       bench_exit_status(rep));
}

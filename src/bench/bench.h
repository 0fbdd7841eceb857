/* ubiblk-bench: a vhost-user-blk front end (the driver side of the protocol,
 * as a VMM and guest kernel would be) that drives a backend's virtqueues
 * directly from user space, to measure IOPS, bandwidth and latency and to
 * check that the backend keeps every acknowledged write. It behaves the same
 * for every backend, so numbers from different backends compare. */
#ifndef UBIBLK_BENCH_H
#define UBIBLK_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/latency_histogram.h"

enum bench_mode {
	BENCH_RANDREAD,
	BENCH_RANDWRITE,
	BENCH_READ,
	BENCH_WRITE,
	BENCH_RW,     /* sequential, reads and writes mixed by rwmixread */
	BENCH_RANDRW, /* random, reads and writes mixed by rwmixread */
	BENCH_VERIFY,
};

enum bench_verify_phase {
	BENCH_VERIFY_BOTH,
	BENCH_VERIFY_WRITE,
	BENCH_VERIFY_READ,
};

/* How a queue thread learns about completions. */
enum bench_completion_wait {
	BENCH_WAIT_POLL,  /* spin on the used ring; no interrupts requested */
	BENCH_WAIT_EVENT, /* sleep on the call eventfd */
};

#define BENCH_MAX_QUEUES     256u
#define BENCH_MAX_QUEUE_SIZE 32768u

struct bench_options {
	const char *socket_path;
	enum bench_mode mode;
	uint32_t block_size;
	uint32_t iodepth;
	uint32_t queues;
	uint32_t queue_size; /* 0: the smallest power of two holding iodepth requests */
	uint64_t runtime_ns; /* 0: not time based */
	uint64_t io_count;   /* 0: one pass over the range (unless time based) */
	uint64_t range_offset;
	uint64_t range_size; /* 0: up to the end of the device */
	uint64_t seed;
	uint32_t rwmixread; /* percent of reads in rw and randrw */
	enum bench_completion_wait wait;
	bool event_idx;
	bool indirect; /* one indirect descriptor per request instead of a chain of three */
	int cpus[BENCH_MAX_QUEUES];
	size_t ncpus;
	uint64_t timeout_ns; /* a request outstanding this long means the backend hangs */
	const char *verify_state_path;
	enum bench_verify_phase verify_phase;
	/* Read mode only: pwrite every block read successfully into this file
	 * at its device offset (created 0644 if missing, never truncated). */
	const char *dump_path;
	/* Which of the above the user gave explicitly: an existing verify state
	 * file supplies the others, and must agree with these. */
	bool block_size_set, range_offset_set, range_size_set, seed_set;
};

struct bench_direction {
	uint64_t ios;
	uint64_t bytes;
	struct latency_histogram latency;
};

/* Why a run ended early. */
enum bench_abort {
	BENCH_COMPLETED = 0,
	BENCH_INTERRUPTED,  /* SIGINT or SIGTERM: results so far are reported */
	BENCH_BACKEND_LOST, /* the backend closed the connection */
	BENCH_BACKEND_HUNG, /* a request got no answer within the timeout */
	BENCH_PROTOCOL,	    /* the backend broke the virtqueue protocol */
	BENCH_FAILED,	    /* the bench itself failed (logged) */
};

struct bench_report {
	/* What was negotiated. */
	uint64_t features;
	uint64_t protocol_features;
	uint64_t capacity_bytes;
	uint32_t device_queues;
	uint32_t queue_size;
	/* What was run. */
	enum bench_mode mode;
	uint32_t block_size;
	uint64_t range_offset;
	uint64_t range_blocks;
	uint64_t seed;
	double elapsed_s;
	struct bench_direction read, write;
	uint64_t flushes;
	uint64_t io_errors;
	uint64_t kicks;
	uint64_t interrupts_waited;
	/* Verify mode. */
	uint64_t blocks_written;
	uint64_t blocks_checked;
	uint64_t blocks_mismatched;
	uint64_t sectors_mismatched;
	enum bench_abort abort;
};

/* Parse a mode or phase name; -EINVAL if unknown. */
int bench_mode_parse(const char *name, enum bench_mode *mode);
const char *bench_mode_name(enum bench_mode mode);
int bench_verify_phase_parse(const char *name, enum bench_verify_phase *phase);
const char *bench_verify_phase_name(enum bench_verify_phase phase);

/* Connect, run the workload, disconnect. 0 when the run took place (check
 * report->abort, io_errors and blocks_mismatched for its outcome), or a
 * negative errno when it could not be set up (already logged). */
int bench_run(const struct bench_options *opts, struct bench_report *report);

/* Exit status of ubiblk-bench for a run that took place: 0 success;
 * 1 data mismatch or failed requests; 3 backend lost, hung or broke the
 * protocol (or the bench failed); 4 interrupted by a signal. (2 is for usage
 * and setup errors, before any report exists.) */
int bench_exit_status(const struct bench_report *report);
const char *bench_abort_name(enum bench_abort abort);

/* The report as text for people, or as one JSON object. */
void bench_report_print_text(const struct bench_options *opts, const struct bench_report *report);
void bench_report_print_json(const struct bench_options *opts, const struct bench_report *report);

#endif

/* One virtqueue driven by one thread: its ring, its request slots (a header,
 * a data buffer and a status byte each, all in the shared memory), the
 * workload it runs and the statistics it gathers. Nothing on the I/O path
 * allocates or takes a lock: every array is sized at setup, and the only
 * state threads share is read-only or, in verify mode, the records of blocks
 * that belong to exactly one queue. */
#ifndef UBIBLK_BENCH_QUEUE_H
#define UBIBLK_BENCH_QUEUE_H

#include <linux/virtio_blk.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bench/bench.h"
#include "bench/driver_ring.h"
#include "bench/frontend.h"
#include "bench/io_workload.h"
#include "bench/verify_state.h"

/* Each request is a chain of three descriptors: header, data, status. It
 * sits in the ring itself, or with INDIRECT_DESC in a table of its own that
 * one ring descriptor points to. */
#define DESCRIPTORS_PER_REQUEST 3u

/* What every queue thread of a run shares. */
struct bench_job {
	enum bench_mode mode;
	uint32_t block_size;
	uint64_t range_offset; /* bytes */
	uint64_t range_blocks;
	uint64_t seed;
	uint64_t runtime_ns;
	uint64_t io_count;
	uint32_t queues;
	uint32_t rwmixread;
	enum bench_completion_wait wait;
	uint64_t timeout_ns;
	bool can_flush;
	struct verify_state *verify; /* verify mode only */
	bool verify_write, verify_read;
	int dump_fd; /* --dump: blocks read go here at their device offset; -1 without */
	/* Queue threads wait for `started` so that they all begin together,
	 * and do nothing if the run was aborted before it. */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	bool started;
	int done_fd;	  /* each queue thread adds 1 when it ends */
	atomic_int abort; /* enum bench_abort: the first reason wins */
	atomic_uint mismatch_lines;
	atomic_uint error_lines;
};

/* Record why the run must stop; later reasons are ignored. */
void bench_job_abort(struct bench_job *job, enum bench_abort reason);

enum request_op { REQUEST_READ, REQUEST_WRITE, REQUEST_FLUSH };

struct bench_slot {
	uint64_t block; /* index within the range */
	uint64_t submit_ns;
	uint32_t generation; /* verify writes */
	uint8_t op;	     /* enum request_op */
	bool in_flight;
	bool verify; /* a verify-phase request: update the state or check the data */
};

struct bench_queue {
	struct bench_job *job;
	uint32_t index;
	int cpu; /* -1: not pinned */
	struct driver_ring ring;
	int kick_fd, call_fd;
	/* Ring descriptors one request takes: 3, or 1 with indirect tables. */
	uint32_t ring_slots_per_request;
	/* Request memory, inside the shared region, and its device addresses. */
	struct vring_desc *tables; /* indirect mode only */
	uint64_t tables_addr;
	struct virtio_blk_outhdr *headers;
	uint8_t *status;
	uint8_t *data;
	size_t data_stride;
	uint64_t headers_addr, status_addr, data_addr;
	uint32_t iodepth;
	struct bench_slot *slots;
	uint16_t *free_slots;
	uint32_t free_count;
	uint32_t in_flight;
	uint64_t last_progress_ns;
	/* Verify mode: the blocks this queue alone writes, and which of them
	 * have a request in flight. */
	uint64_t part_first, part_count;
	uint8_t *busy;
	/* Results. */
	struct bench_direction read, write;
	uint64_t flushes, io_errors, interrupts_waited;
	uint64_t blocks_written, blocks_checked, blocks_mismatched, sectors_mismatched;
	uint64_t start_ns, end_ns;
	pthread_t thread;
	bool thread_started;
};

/* Shared memory one queue needs for a ring of `ring_size` and `iodepth`
 * requests of `block_size` bytes. */
size_t bench_queue_memory_bytes(uint16_t ring_size, uint32_t iodepth, uint32_t block_size,
				bool indirect);

/* Set up queue `index` in `mem` (bench_queue_memory_bytes() long, zeroed,
 * inside fe's shared memory): ring, eventfds, slots, and in write modes the
 * data every write sends. Uses indirect tables if fe negotiated them. */
int bench_queue_init(struct bench_queue *q, struct bench_job *job, const struct bench_frontend *fe,
		     uint32_t index, void *mem, uint16_t ring_size, uint32_t iodepth, int cpu);
void bench_queue_destroy(struct bench_queue *q);

/* The queue thread: waits for job->started, runs the workload, ends. */
void *bench_queue_thread(void *arg);

/* Verify mode, on the I/O path (queue_verify.c). */
/* The block to write instead of `wanted` if that one has a write in flight,
 * stamped with its next generation in `data`; false if the generation
 * counter is exhausted. */
bool queue_verify_prepare_write(struct bench_queue *q, struct bench_slot *slot, uint64_t wanted,
				void *data);
bool queue_verify_block_written(const struct bench_queue *q, uint64_t block);
void queue_verify_write_done(struct bench_queue *q, const struct bench_slot *slot, bool ok);
void queue_verify_read_done(struct bench_queue *q, struct bench_slot *slot, const void *data);

#endif

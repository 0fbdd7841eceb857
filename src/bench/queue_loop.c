/* The queue thread: fill free slots, publish them with at most one kick,
 * reap completions, repeat. One phase runs one workload; verify mode runs a
 * write phase, a flush and a read phase in turn. */
#include "bench/bench_queue.h"

#include "common/common.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

/* Empty polls of the used ring before the thread yields its CPU, so that a
 * backend sharing the CPU still runs (about 50 us of spinning). */
#define SPINS_BEFORE_YIELD 1024u
/* Longest sleep on the call eventfd before re-checking stop conditions. */
#define EVENT_WAIT_MS	100
#define ERROR_LINES_MAX 20u

enum phase_kind { PHASE_LOAD, PHASE_VERIFY_WRITE, PHASE_FLUSH, PHASE_VERIFY_READ };

struct phase {
	enum phase_kind kind;
	struct io_workload workload;
	uint64_t deadline_ns; /* 0: runs until the workload is used up */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static const char *op_name(uint8_t op)
{
	return op == REQUEST_READ ? "read" : op == REQUEST_WRITE ? "write" : "flush";
}

static void submit(struct bench_queue *q, uint16_t index, uint8_t op, uint64_t now)
{
	const struct bench_job *job = q->job;
	struct bench_slot *slot = &q->slots[index];
	uint16_t head = (uint16_t)(index * q->ring_slots_per_request);
	/* The chain lives in the ring, or in the slot's indirect table, where
	 * `next` counts from the table's start. */
	struct vring_desc *d =
	    q->tables ? &q->tables[index * DESCRIPTORS_PER_REQUEST] : &q->ring.desc[head];
	uint16_t first = q->tables ? 0 : head;
	uint64_t offset = job->range_offset + slot->block * job->block_size;

	slot->op = op;
	slot->submit_ns = now;
	slot->in_flight = true;
	q->headers[index].type = op == REQUEST_READ    ? VIRTIO_BLK_T_IN
				 : op == REQUEST_WRITE ? VIRTIO_BLK_T_OUT
						       : VIRTIO_BLK_T_FLUSH;
	q->headers[index].ioprio = 0;
	q->headers[index].sector = op == REQUEST_FLUSH ? 0 : offset >> SECTOR_SHIFT;
	/* A status the device never writes must not read as success. */
	q->status[index] = 0xff;

	d[0].addr = q->headers_addr + sizeof(struct virtio_blk_outhdr) * index;
	d[0].len = sizeof(struct virtio_blk_outhdr);
	d[0].flags = VRING_DESC_F_NEXT;
	d[0].next = (uint16_t)(first + (op == REQUEST_FLUSH ? 2 : 1));
	d[1].addr = q->data_addr + q->data_stride * index;
	d[1].len = job->block_size;
	d[1].flags = VRING_DESC_F_NEXT | (op == REQUEST_READ ? VRING_DESC_F_WRITE : 0);
	d[1].next = (uint16_t)(first + 2);
	d[2].addr = q->status_addr + index;
	d[2].len = 1;
	d[2].flags = VRING_DESC_F_WRITE;
	d[2].next = 0;
	q->in_flight++;
	driver_ring_push(&q->ring, head);
}

/* Queue requests into every free slot; false once the workload is used up. */
static bool fill(struct bench_queue *q, struct phase *ph, uint64_t now)
{
	while (q->free_count > 0) {
		uint64_t block;
		bool is_read;
		if (!io_workload_next(&ph->workload, &block, &is_read))
			return false;
		uint16_t index = q->free_slots[q->free_count - 1];
		struct bench_slot *slot = &q->slots[index];
		slot->block = block;
		slot->verify = ph->kind == PHASE_VERIFY_WRITE || ph->kind == PHASE_VERIFY_READ;
		uint8_t op = is_read ? REQUEST_READ : REQUEST_WRITE;
		if (ph->kind == PHASE_VERIFY_READ) {
			if (!queue_verify_block_written(q, block))
				continue;
			op = REQUEST_READ;
		} else if (ph->kind == PHASE_VERIFY_WRITE) {
			if (!queue_verify_prepare_write(q, slot, block,
							q->data + q->data_stride * index)) {
				bench_job_abort(q->job, BENCH_FAILED);
				return false;
			}
			op = REQUEST_WRITE;
		} else if (ph->kind == PHASE_FLUSH) {
			op = REQUEST_FLUSH;
		}
		q->free_count--;
		/* Stamping a verify block takes long enough to matter. */
		submit(q, index, op, ph->kind == PHASE_VERIFY_WRITE ? now_ns() : now);
	}
	return true;
}

static void log_failed_request(struct bench_queue *q, const struct bench_slot *slot, uint8_t status)
{
	struct bench_job *job = q->job;
	if (atomic_fetch_add(&job->error_lines, 1) >= ERROR_LINES_MAX)
		return;
	uint64_t offset = job->range_offset + slot->block * job->block_size;
	if (status == 0xff)
		log_error("queue %u: %s at offset %llu completed without a status byte", q->index,
			  op_name(slot->op), (unsigned long long)offset);
	else
		log_error("queue %u: %s of %u bytes at offset %llu failed with status %u (%s)",
			  q->index, op_name(slot->op), job->block_size, (unsigned long long)offset,
			  status, status == VIRTIO_BLK_S_UNSUPP ? "unsupported" : "I/O error");
}

/* --dump: write the block a read returned into the dump file at the offset
 * it has on the device. False (logged) when it cannot be written whole. */
static bool dump_block(struct bench_queue *q, const struct bench_slot *slot, const uint8_t *data)
{
	struct bench_job *job = q->job;
	uint64_t offset = job->range_offset + slot->block * job->block_size;
	size_t done = 0;
	while (done < job->block_size) {
		ssize_t n = pwrite(job->dump_fd, data + done, job->block_size - done,
				   (off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (atomic_fetch_add(&job->error_lines, 1) < ERROR_LINES_MAX)
				log_error("queue %u: --dump: cannot write %u bytes at offset %llu: "
					  "%s",
					  q->index, job->block_size, (unsigned long long)offset,
					  n < 0 ? strerror(errno) : "no space written");
			return false;
		}
		done += (size_t)n;
	}
	return true;
}

static void complete(struct bench_queue *q, uint32_t id, uint64_t now)
{
	uint32_t index = id / q->ring_slots_per_request;
	if (id % q->ring_slots_per_request != 0 || index >= q->iodepth ||
	    !q->slots[index].in_flight) {
		log_error("queue %u: device returned descriptor %u, which heads no outstanding "
			  "request",
			  q->index, id);
		bench_job_abort(q->job, BENCH_PROTOCOL);
		return;
	}
	struct bench_slot *slot = &q->slots[index];
	uint8_t status = q->status[index];
	bool ok = status == VIRTIO_BLK_S_OK;
	uint64_t latency = now - slot->submit_ns;
	struct bench_direction *dir = slot->op == REQUEST_READ ? &q->read : &q->write;
	if (slot->op == REQUEST_FLUSH) {
		q->flushes++;
	} else {
		dir->ios++;
		dir->bytes += q->job->block_size;
		latency_histogram_record(&dir->latency, latency);
	}
	if (!ok) {
		q->io_errors++;
		log_failed_request(q, slot, status);
	}
	if (slot->verify && slot->op == REQUEST_WRITE)
		queue_verify_write_done(q, slot, ok);
	else if (slot->verify && ok)
		queue_verify_read_done(q, slot, q->data + q->data_stride * index);
	else if (q->job->dump_fd >= 0 && ok && slot->op == REQUEST_READ &&
		 !dump_block(q, slot, q->data + q->data_stride * index))
		bench_job_abort(q->job, BENCH_FAILED);
	slot->in_flight = false;
	q->free_slots[q->free_count++] = (uint16_t)index;
	q->in_flight--;
}

static unsigned reap(struct bench_queue *q)
{
	uint16_t pending = driver_ring_used_pending(&q->ring);
	if (pending == 0)
		return 0;
	if (pending > q->in_flight) {
		log_error("queue %u: device published %u used entries with %u requests "
			  "outstanding",
			  q->index, pending, q->in_flight);
		bench_job_abort(q->job, BENCH_PROTOCOL);
		return 0;
	}
	uint64_t now = now_ns();
	for (uint16_t i = 0; i < pending; i++) {
		struct vring_used_elem elem = driver_ring_take_used(&q->ring);
		complete(q, elem.id, now);
	}
	if (q->job->wait == BENCH_WAIT_POLL)
		driver_ring_keep_interrupts_off(&q->ring);
	q->last_progress_ns = now;
	return pending;
}

static void wait_for_completion(struct bench_queue *q)
{
	if (q->job->wait == BENCH_WAIT_POLL) {
		for (unsigned i = 0; i < SPINS_BEFORE_YIELD; i++) {
			if (driver_ring_used_pending(&q->ring))
				return;
			cpu_relax();
		}
		sched_yield();
		return;
	}
	driver_ring_request_interrupts(&q->ring, true);
	if (driver_ring_used_pending(&q->ring))
		return;
	struct pollfd pfd = {.fd = q->call_fd, .events = POLLIN};
	if (poll(&pfd, 1, EVENT_WAIT_MS) > 0) {
		uint64_t count;
		if (read(q->call_fd, &count, sizeof(count)) == (ssize_t)sizeof(count))
			q->interrupts_waited++;
	}
}

/* False when the run must end without waiting for outstanding requests. */
static bool check_progress(struct bench_queue *q, uint64_t now)
{
	struct bench_job *job = q->job;
	if (q->in_flight > 0 && now - q->last_progress_ns > job->timeout_ns) {
		log_error("queue %u: no completion for %.1f s with %u requests outstanding",
			  q->index, (double)(now - q->last_progress_ns) / 1e9, q->in_flight);
		bench_job_abort(job, BENCH_BACKEND_HUNG);
		return false;
	}
	return true;
}

static void run_phase(struct bench_queue *q, struct phase *ph)
{
	struct bench_job *job = q->job;
	bool draining = false;
	q->last_progress_ns = now_ns();
	for (;;) {
		uint64_t now = now_ns();
		int abort = atomic_load_explicit(&job->abort, memory_order_relaxed);
		if (abort != BENCH_COMPLETED && abort != BENCH_INTERRUPTED)
			return;
		if (abort == BENCH_INTERRUPTED || (ph->deadline_ns && now >= ph->deadline_ns))
			draining = true;
		if (!draining && !fill(q, ph, now))
			draining = true;
		int rc = driver_ring_publish(&q->ring);
		if (rc < 0) {
			log_error("queue %u: kick: %s", q->index, strerror(-rc));
			bench_job_abort(job, BENCH_FAILED);
			return;
		}
		if (draining && q->in_flight == 0)
			return;
		if (reap(q) == 0) {
			wait_for_completion(q);
			if (!check_progress(q, now_ns()))
				return;
		}
	}
}

static bool still_running(const struct bench_queue *q)
{
	return atomic_load(&q->job->abort) == BENCH_COMPLETED;
}

/* This queue's part of `total` requests, split as evenly as possible. */
static uint64_t share_of(const struct bench_queue *q, uint64_t total)
{
	uint32_t n = q->job->queues;
	return total / n + (q->index < total % n ? 1 : 0);
}

static void run_load(struct bench_queue *q, uint64_t start)
{
	const struct bench_job *job = q->job;
	bool random = job->mode == BENCH_RANDREAD || job->mode == BENCH_RANDWRITE ||
		      job->mode == BENCH_RANDRW;
	uint32_t read_percent = job->mode == BENCH_RANDREAD || job->mode == BENCH_READ ? 100
				: job->mode == BENCH_RANDWRITE || job->mode == BENCH_WRITE
				    ? 0
				    : job->rwmixread;
	/* Random I/O covers the whole range from every queue; sequential I/O
	 * streams through the queue's own share, as separate fio jobs would. */
	uint64_t first = random ? 0 : q->part_first;
	uint64_t count = random ? job->range_blocks : q->part_count;
	uint64_t ios = job->runtime_ns ? IO_WORKLOAD_UNLIMITED
		       : job->io_count ? share_of(q, job->io_count)
		       : random	       ? share_of(q, job->range_blocks)
				       : q->part_count;
	struct phase ph = {.kind = PHASE_LOAD,
			   .deadline_ns = job->runtime_ns ? start + job->runtime_ns : 0};
	io_workload_init(&ph.workload, random, read_percent, first, count, ios,
			 job->seed ^ ((uint64_t)q->index << 48));
	run_phase(q, &ph);
}

static void run_verify(struct bench_queue *q, uint64_t start)
{
	const struct bench_job *job = q->job;
	uint64_t seed = job->seed ^ ((uint64_t)q->index << 48);
	struct phase ph;
	if (job->verify_write) {
		/* Without a time or count, write every block once, in order;
		 * with one, overwrite random blocks of the queue's share. */
		bool random = job->runtime_ns || job->io_count;
		uint64_t ios = job->runtime_ns ? IO_WORKLOAD_UNLIMITED
			       : job->io_count ? share_of(q, job->io_count)
					       : q->part_count;
		ph = (struct phase){.kind = PHASE_VERIFY_WRITE,
				    .deadline_ns = job->runtime_ns ? start + job->runtime_ns : 0};
		io_workload_init(&ph.workload, random, 0, q->part_first, q->part_count, ios, seed);
		run_phase(q, &ph);
		if (!still_running(q))
			return;
		if (job->can_flush) {
			ph = (struct phase){.kind = PHASE_FLUSH};
			io_workload_init(&ph.workload, false, 0, q->part_first, 1, 1, seed);
			run_phase(q, &ph);
		}
	}
	if (job->verify_read && still_running(q)) {
		ph = (struct phase){.kind = PHASE_VERIFY_READ};
		io_workload_init(&ph.workload, false, 100, q->part_first, q->part_count,
				 q->part_count, seed);
		run_phase(q, &ph);
	}
}

static void pin(const struct bench_queue *q)
{
	if (q->cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(q->cpu, &set);
	int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc != 0)
		log_warn("queue %u: cannot pin to CPU %d: %s", q->index, q->cpu, strerror(rc));
}

void *bench_queue_thread(void *arg)
{
	struct bench_queue *q = arg;
	pin(q);
	struct bench_job *job = q->job;
	pthread_mutex_lock(&job->start_lock);
	while (!job->started)
		pthread_cond_wait(&job->start_cond, &job->start_lock);
	pthread_mutex_unlock(&job->start_lock);
	q->start_ns = now_ns();
	/* A run aborted before the start has nothing to do. */
	if (still_running(q) && job->mode == BENCH_VERIFY)
		run_verify(q, q->start_ns);
	else if (still_running(q))
		run_load(q, q->start_ns);
	q->end_ns = now_ns();
	uint64_t one = 1;
	if (write(job->done_fd, &one, sizeof(one)) < 0)
		log_error("queue %u: cannot report its end: %s", q->index, strerror(errno));
	return NULL;
}

#include "bench/bench_queue.h"

#include "bench/block_pattern.h"
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static size_t align_page(size_t v)
{
	return (v + BUFFER_ALIGNMENT - 1) & ~(size_t)(BUFFER_ALIGNMENT - 1);
}

/* Layout inside one queue's share: ring, indirect tables, headers and
 * status bytes, then one page-aligned data buffer per slot (O_DIRECT
 * backends need the alignment to avoid a bounce buffer). */
struct queue_layout {
	size_t tables, headers, status, data, stride, total;
};

static void queue_layout(uint16_t ring_size, uint32_t iodepth, uint32_t block_size, bool indirect,
			 struct queue_layout *l)
{
	l->tables = driver_ring_bytes(ring_size);
	l->headers = l->tables +
		     (indirect ? sizeof(struct vring_desc) * DESCRIPTORS_PER_REQUEST * iodepth : 0);
	l->status = l->headers + sizeof(struct virtio_blk_outhdr) * iodepth;
	l->data = align_page(l->status + iodepth);
	l->stride = align_page(block_size);
	l->total = l->data + l->stride * iodepth;
}

size_t bench_queue_memory_bytes(uint16_t ring_size, uint32_t iodepth, uint32_t block_size,
				bool indirect)
{
	struct queue_layout l;
	queue_layout(ring_size, iodepth, block_size, indirect, &l);
	return l.total;
}

void bench_job_abort(struct bench_job *job, enum bench_abort reason)
{
	int expected = BENCH_COMPLETED;
	atomic_compare_exchange_strong(&job->abort, &expected, (int)reason);
}

static void partition(struct bench_queue *q)
{
	const struct bench_job *job = q->job;
	/* Contiguous shares, sizes differing by at most one block. */
	q->part_first = job->range_blocks * q->index / job->queues;
	q->part_count = job->range_blocks * (q->index + 1) / job->queues - q->part_first;
}

static int alloc_arrays(struct bench_queue *q)
{
	q->slots = calloc(q->iodepth, sizeof(*q->slots));
	q->free_slots = calloc(q->iodepth, sizeof(*q->free_slots));
	if (!q->slots || !q->free_slots)
		return -ENOMEM;
	/* Hand out low slots first: their buffers are the warmest. */
	for (uint32_t i = 0; i < q->iodepth; i++)
		q->free_slots[i] = (uint16_t)(q->iodepth - 1 - i);
	q->free_count = q->iodepth;
	if (q->job->mode == BENCH_VERIFY) {
		q->busy = calloc(q->part_count ? q->part_count : 1, 1);
		if (!q->busy)
			return -ENOMEM;
	}
	return 0;
}

int bench_queue_init(struct bench_queue *q, struct bench_job *job, const struct bench_frontend *fe,
		     uint32_t index, void *mem, uint16_t ring_size, uint32_t iodepth, int cpu)
{
	memset(q, 0, sizeof(*q));
	q->job = job;
	q->index = index;
	q->cpu = cpu;
	q->iodepth = iodepth;
	q->kick_fd = q->call_fd = -1;
	q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->kick_fd < 0 || q->call_fd < 0)
		return -errno;
	partition(q);
	int rc = alloc_arrays(q);
	if (rc < 0)
		return rc;

	bool indirect = (fe->features >> VIRTIO_RING_F_INDIRECT_DESC) & 1u;
	struct queue_layout l;
	queue_layout(ring_size, iodepth, job->block_size, indirect, &l);
	driver_ring_init(&q->ring, mem, ring_size, (fe->features >> VIRTIO_RING_F_EVENT_IDX) & 1u,
			 q->kick_fd);
	driver_ring_request_interrupts(&q->ring, job->wait == BENCH_WAIT_EVENT);
	q->headers = (struct virtio_blk_outhdr *)((char *)mem + l.headers);
	q->status = (uint8_t *)mem + l.status;
	q->data = (uint8_t *)mem + l.data;
	q->data_stride = l.stride;
	q->headers_addr = frontend_device_address(fe, q->headers);
	q->status_addr = frontend_device_address(fe, q->status);
	q->data_addr = frontend_device_address(fe, q->data);
	q->ring_slots_per_request = indirect ? 1 : DESCRIPTORS_PER_REQUEST;
	if (indirect) {
		/* Ring descriptor i always points at slot i's table. */
		q->tables = (struct vring_desc *)((char *)mem + l.tables);
		q->tables_addr = frontend_device_address(fe, q->tables);
		for (uint32_t i = 0; i < iodepth; i++) {
			q->ring.desc[i].addr = q->tables_addr + sizeof(struct vring_desc) *
								    DESCRIPTORS_PER_REQUEST * i;
			q->ring.desc[i].len = sizeof(struct vring_desc) * DESCRIPTORS_PER_REQUEST;
			q->ring.desc[i].flags = VRING_DESC_F_INDIRECT;
			q->ring.desc[i].next = 0;
		}
	}

	/* Writes outside verify mode send this data as it is: incompressible,
	 * never all zeroes, generated once rather than per I/O. */
	if (job->mode != BENCH_VERIFY && job->mode != BENCH_READ && job->mode != BENCH_RANDREAD) {
		for (uint32_t i = 0; i < iodepth; i++)
			block_pattern_fill(q->data + l.stride * i, job->block_size, job->seed,
					   (uint64_t)index << 32 | i, 0);
	}
	latency_histogram_init(&q->read.latency);
	latency_histogram_init(&q->write.latency);
	return 0;
}

void bench_queue_destroy(struct bench_queue *q)
{
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	if (q->call_fd >= 0)
		close(q->call_fd);
	free(q->slots);
	free(q->free_slots);
	free(q->busy);
	q->slots = NULL;
	q->free_slots = NULL;
	q->busy = NULL;
	q->kick_fd = q->call_fd = -1;
}

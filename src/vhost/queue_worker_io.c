/* A queue worker's data path: request slots, and one processing round
 * (pop, parse, submit, reap, return, signal). Runs on the worker thread
 * only, without locks. */
#include "vhost/queue_worker_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "io_tracker/io_tracker.h"

/* Bad requests logged at warning level per queue; the rest go to debug so a
 * hostile guest cannot flood the log. */
#define BAD_REQUEST_WARNINGS 16u
#define COMPLETION_BATCH     64

bool queue_worker_accepting(const struct queue_worker *qw)
{
	/* Memory the front end shrank under us reads as zeros now: nothing
	 * more is taken from it (the control thread ends the connection). */
	return qw->running && !qw->stopping && qw->have.enabled && qw->ring_mapped &&
	       !qw->vq.broken && !guest_memory_broken(qw->mem);
}

static void log_bad_request(struct queue_worker *qw, const struct blk_request *req)
{
	enum log_level level =
	    qw->bad_requests_logged < BAD_REQUEST_WARNINGS ? LOG_WARN : LOG_DEBUG;
	if (!log_enabled(level))
		return;
	qw->bad_requests_logged++;
	log_msg(level, "queue %u: request (head %u, type %u) refused: %s%s", qw->cfg.index,
		req->head, req->type, req->error ? req->error : "unknown",
		qw->bad_requests_logged == BAD_REQUEST_WARNINGS ? " (further ones logged at debug)"
								: "");
}

/* ---- bounce memory ----
 * Each queue may hold at most bounce_budget bytes of bounce buffers at once
 * (a request larger than the whole budget runs alone), so a guest that
 * fills every slot with large misaligned requests cannot make the back end
 * allocate queue_size times the largest request. A request over the budget
 * is not failed: its head goes back to the ring and popping pauses until
 * requests in flight release their buffers. Buffers of the common size
 * (pool_bytes, the advertised seg_count_max * seg_size_max) are kept in a
 * small pool instead of being allocated and zeroed for every request. */

/* Four requests of the advertised size keep a queue busy; 8 MiB at least. */
#define BOUNCE_BUDGET_REQUESTS 4u
#define BOUNCE_BUDGET_MIN      (8u << 20)
#define BOUNCE_POOL_MAX	       16u

/* Bounce bytes a parsed request needs: 0 when its buffers meet O_DIRECT
 * alignment (zero copy) or it moves no data. */
static size_t bounce_need(const struct queue_worker *qw, const struct blk_request *req)
{
	if ((req->type != VIRTIO_BLK_T_IN && req->type != VIRTIO_BLK_T_OUT) || req->data_len == 0 ||
	    bdev_iov_is_direct_aligned(req->data, req->data_cnt))
		return 0;
	if (req->data_len <= qw->pool_bytes)
		return qw->pool_bytes;
	return (size_t)req->data_len; /* at most limits.max_bytes */
}

/* Gives the slot its bounce buffer if it needs one. False when the budget
 * is spent: the request must wait. A failed allocation leaves slot->bounce
 * NULL and the request fails with IOERR. */
static bool bounce_reserve(struct queue_worker *qw, struct request_slot *slot)
{
	size_t need = bounce_need(qw, &slot->req);
	slot->bounced = need > 0;
	if (need == 0)
		return true;
	if (qw->bounce_in_use > 0 && (qw->bounce_in_use >= qw->bounce_budget ||
				      need > qw->bounce_budget - qw->bounce_in_use))
		return false;
	/* Fresh buffers are zeroed: the null engine leaves read buffers
	 * untouched, and the guest must never see old heap contents. */
	if (need == qw->pool_bytes && qw->pool_count > 0)
		slot->bounce = qw->bounce_pool[--qw->pool_count];
	else
		slot->bounce = buffer_alloc(qw->alignment, need);
	if (!slot->bounce)
		return true;
	slot->bounce_size = need;
	qw->bounce_in_use += need;
	if (qw->bounce_in_use > qw->bounce_peak)
		__atomic_store_n(&qw->bounce_peak, qw->bounce_in_use, __ATOMIC_RELAXED);
	return true;
}

static void bounce_release(struct queue_worker *qw, struct request_slot *slot)
{
	if (!slot->bounce)
		return;
	qw->bounce_in_use -= slot->bounce_size;
	if (slot->bounce_size == qw->pool_bytes && qw->pool_count < qw->pool_cap)
		qw->bounce_pool[qw->pool_count++] = slot->bounce;
	else
		buffer_free(slot->bounce);
	slot->bounce = NULL;
	slot->bounce_size = 0;
}

void queue_worker_get_bounce_stats(const struct queue_worker *qw,
				   struct queue_worker_bounce_stats *out)
{
	out->budget = qw->bounce_budget; /* set before the worker reported its start-up */
	out->peak = __atomic_load_n(&qw->bounce_peak, __ATOMIC_RELAXED);
	out->waits = __atomic_load_n(&qw->bounce_waits, __ATOMIC_RELAXED);
}

/* ---- requests ---- */

/* Returns the slot's request to the guest and the slot to the free list. */
static void finish_request(struct queue_worker *qw, uint32_t index, uint8_t status)
{
	struct request_slot *slot = &qw->slots[index];
	uint32_t used_len = blk_request_complete(&slot->req, status);
	if (qw->ring_mapped) {
		virtqueue_push(&qw->vq, slot->req.head, used_len);
		qw->used_pending = true;
	} else if (qw->unreturned_count < qw->nslots) {
		/* A memory table without the rings arrived while the request
		 * ran: it is returned once they are mapped again. */
		qw->unreturned[qw->unreturned_count++] =
		    (struct unreturned_entry){.head = slot->req.head, .len = used_len};
	}
	bounce_release(qw, slot);
	qw->free_list[qw->free_count++] = index;
}

void queue_worker_return_unreturned(struct queue_worker *qw)
{
	for (uint32_t i = 0; i < qw->unreturned_count; i++)
		virtqueue_push(&qw->vq, qw->unreturned[i].head, qw->unreturned[i].len);
	if (qw->unreturned_count > 0) {
		log_debug("queue %u: %u requests that completed while the rings were unmapped "
			  "returned",
			  qw->cfg.index, qw->unreturned_count);
		qw->used_pending = true;
	}
	qw->unreturned_count = 0;
}

void queue_worker_drop_unreturned(struct queue_worker *qw)
{
	if (qw->unreturned_count > 0)
		log_warn("queue %u: %u completed requests were never returned: the rings were "
			 "unmapped when the queue stopped",
			 qw->cfg.index, qw->unreturned_count);
	qw->unreturned_count = 0;
}

/* Queues an IN or OUT: straight into guest memory when the buffers meet
 * O_DIRECT alignment, through the bounce buffer otherwise. */
static uint8_t queue_read_write(struct queue_worker *qw, uint32_t index)
{
	struct request_slot *slot = &qw->slots[index];
	struct blk_request *req = &slot->req;
	const struct iovec *iov = req->data;
	int iovcnt = req->data_cnt;
	if (slot->bounced) { /* bounce_reserve() decided */
		void *buf = slot->bounce;
		if (!buf) {
			req->error = "no memory for a bounce buffer";
			return VIRTIO_BLK_S_IOERR;
		}
		if (req->type == VIRTIO_BLK_T_OUT)
			blk_request_copy_from_guest(req, buf);
		slot->bounce_iov.iov_base = buf;
		slot->bounce_iov.iov_len = (size_t)req->data_len;
		iov = &slot->bounce_iov;
		iovcnt = 1;
	}
	if (req->type == VIRTIO_BLK_T_IN)
		bdev_add_readv(qw->ch, req->sector, iov, iovcnt, index);
	else
		bdev_add_writev(qw->ch, req->sector, iov, iovcnt, index);
	return VIRTIO_BLK_S_OK;
}

/* Queues the device operation of a parsed request. *queued says whether an
 * operation went to the channel; otherwise the request completes right away
 * with the returned status. */
static uint8_t queue_operation(struct queue_worker *qw, uint32_t index, bool *queued)
{
	struct blk_request *req = &qw->slots[index].req;
	*queued = false;
	switch (req->type) {
	case VIRTIO_BLK_T_GET_ID:
		return blk_request_get_id(req, qw->device_id);
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (req->data_len == 0)
			return VIRTIO_BLK_S_OK;
		*queued = true;
		return queue_read_write(qw, index);
	case VIRTIO_BLK_T_FLUSH:
		bdev_add_flush(qw->ch, index);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (req->num_sectors == 0)
			return VIRTIO_BLK_S_OK;
		if (req->type == VIRTIO_BLK_T_DISCARD)
			bdev_add_discard(qw->ch, req->sector, req->num_sectors, index);
		else
			bdev_add_write_zeroes(qw->ch, req->sector, req->num_sectors, req->unmap,
					      index);
		break;
	default:
		return VIRTIO_BLK_S_UNSUPP; /* parsing refuses these already */
	}
	*queued = true;
	return VIRTIO_BLK_S_OK;
}

/* The I/O tracker shows reads, writes and flushes (the `queues` and `stats`
 * RPCs). DISCARD and WRITE_ZEROES are left out: they transfer no data, and
 * counting them as writes would inflate bytes_written by whole ranges. */
static enum io_kind tracked_kind(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN:
		return IO_KIND_READ;
	case VIRTIO_BLK_T_OUT:
		return IO_KIND_WRITE;
	case VIRTIO_BLK_T_FLUSH:
		return IO_KIND_FLUSH;
	default:
		return IO_KIND_NONE;
	}
}

/* Starts the request at `head`. False when it must wait for bounce memory:
 * the head is then back in the ring, to be parsed again later. *batch_ns is
 * the tracker's time for the batch being popped: the worker loop's latest
 * clock read, or (threadless) one read at the batch's first tracked
 * request, shared by the rest (they are submitted together). */
static bool start_request(struct queue_worker *qw, uint16_t head, uint64_t *batch_ns)
{
	uint32_t index = qw->free_list[--qw->free_count];
	struct request_slot *slot = &qw->slots[index];
	bool queued = false;
	uint8_t status = blk_request_parse(&slot->req, &qw->vq, qw->mem, head, &qw->limits);
	if (status == VIRTIO_BLK_S_OK && !bounce_reserve(qw, slot)) {
		virtqueue_unpop(&qw->vq);
		qw->free_list[qw->free_count++] = index;
		qw->bounce_stalled = true;
		__atomic_store_n(&qw->bounce_waits, qw->bounce_waits + 1, __ATOMIC_RELAXED);
		return false;
	}
	/* A request parsing refuses is the guest's mistake; one queueing
	 * refuses is malformed (GET_ID, an unknown type) unless it is a read
	 * or write that found no bounce memory, which is ours. */
	enum io_error_kind error_kind = IO_ERROR_BAD_REQUEST;
	if (status == VIRTIO_BLK_S_OK) {
		status = queue_operation(qw, index, &queued);
		if (slot->req.type == VIRTIO_BLK_T_IN || slot->req.type == VIRTIO_BLK_T_OUT)
			error_kind = IO_ERROR_IO;
	}
	if (status == VIRTIO_BLK_S_OK && queued) {
		if (qw->cfg.tracker && *batch_ns == 0)
			*batch_ns = now_ns();
		io_tracker_begin(qw->cfg.tracker, index, tracked_kind(slot->req.type),
				 slot->req.sector, (uint32_t)(slot->req.data_len >> SECTOR_SHIFT),
				 *batch_ns);
		slot->mem = guest_memory_ref(qw->mem);
		slot->in_flight = true;
		qw->in_flight++;
		qw->submit_needed = true;
		return true;
	}
	if (status != VIRTIO_BLK_S_OK) {
		log_bad_request(qw, &slot->req);
		io_tracker_count_error(qw->cfg.tracker, error_kind);
	}
	finish_request(qw, index, status);
	return true;
}

static bool pop_requests(struct queue_worker *qw)
{
	bool popped = false;
	uint16_t head;
	uint64_t batch_ns = qw->round_ns;
	/* A driver never has more chains outstanding than slots; a hostile one
	 * that reuses heads just waits until slots free up. */
	qw->bounce_stalled = false;
	while (qw->free_count > 0 && virtqueue_pop(&qw->vq, &head) == 1) {
		if (!start_request(qw, head, &batch_ns))
			break;
		popped = true;
	}
	return popped;
}

/* `done_ns`: when the batch of completions holding c was reaped. */
static void complete_operation(struct queue_worker *qw, const struct bdev_completion *c,
			       uint64_t done_ns)
{
	if (c->id >= qw->nslots || !qw->slots[c->id].in_flight) {
		log_error("queue %u: completion for unknown request %llu ignored", qw->cfg.index,
			  (unsigned long long)c->id);
		return;
	}
	uint32_t index = (uint32_t)c->id;
	struct request_slot *slot = &qw->slots[index];
	uint8_t status = VIRTIO_BLK_S_OK;
	if (c->result < 0) {
		status = VIRTIO_BLK_S_IOERR;
		bool stripe_failed = c->result == BDEV_ERR_STRIPE_FAILED;
		io_tracker_count_error(qw->cfg.tracker,
				       stripe_failed ? IO_ERROR_FAILED_STRIPE : IO_ERROR_IO);
		log_warn("queue %u: request type %u at sector %llu failed: %s", qw->cfg.index,
			 slot->req.type, (unsigned long long)slot->req.sector,
			 stripe_failed ? "its stripe could not be fetched" : strerror(-c->result));
	} else if (slot->bounced && slot->req.type == VIRTIO_BLK_T_IN) {
		blk_request_copy_to_guest(&slot->req, slot->bounce_iov.iov_base);
	}
	if (tracked_kind(slot->req.type) != IO_KIND_NONE)
		io_tracker_end(qw->cfg.tracker, index, done_ns);
	slot->in_flight = false;
	qw->in_flight--;
	finish_request(qw, index, status);
	guest_memory_unref(slot->mem);
	slot->mem = NULL;
}

static bool reap_completions(struct queue_worker *qw)
{
	struct bdev_completion done[COMPLETION_BATCH];
	bool reaped = false;
	int n;
	do {
		n = bdev_poll(qw->ch, done, COMPLETION_BATCH);
		/* One clock read for the batch: it costs as much as the rest of
		 * the tracking. */
		uint64_t done_ns = n > 0 && qw->cfg.tracker ? now_ns() : 0;
		for (int i = 0; i < n; i++)
			complete_operation(qw, &done[i], done_ns);
		reaped |= n > 0;
	} while (n == COMPLETION_BATCH);
	return reaped;
}

void queue_worker_signal_guest(struct queue_worker *qw)
{
	if (qw->have.call_fd < 0)
		return;
	/* Never blocks, whatever the front end does to the fd (eventfd_io.h). */
	int rc = eventfd_io_signal(&qw->call_io, qw->have.call_fd);
	if (rc < 0)
		log_warn("queue %u: signalling the guest failed: %s", qw->cfg.index, strerror(-rc));
}

/* One signal per batch, when the driver asked for one. */
static void publish_used(struct queue_worker *qw)
{
	if (!qw->used_pending)
		return;
	qw->used_pending = false;
	virtqueue_publish_used(&qw->vq);
	if (virtqueue_should_notify(&qw->vq))
		queue_worker_signal_guest(qw);
}

/* Pop everything available, submit it at once, reap, return and signal. */
bool queue_worker_run_round(struct queue_worker *qw)
{
	bool active = false;
	if (queue_worker_accepting(qw))
		active = pop_requests(qw);
	if (qw->submit_needed || bdev_needs_submit(qw->ch)) {
		int rc = bdev_submit(qw->ch);
		/* Operations the kernel did not take stay queued in the channel
		 * (bdev_needs_submit) and are retried: the worker keeps polling
		 * until it takes them. */
		qw->submit_needed = rc < 0;
		if (rc < 0)
			log_debug("queue %u: submit: %s", qw->cfg.index, strerror(-rc));
	}
	if (qw->in_flight > 0)
		active |= reap_completions(qw);
	publish_used(qw);
	return active;
}

void queue_worker_io_fini(struct queue_worker *qw)
{
	for (uint32_t i = 0; qw->slots && i < qw->nslots; i++) {
		blk_request_fini(&qw->slots[i].req);
		buffer_free(qw->slots[i].bounce);
	}
	for (uint32_t i = 0; i < qw->pool_count; i++)
		buffer_free(qw->bounce_pool[i]);
	free(qw->bounce_pool);
	free(qw->unreturned);
	free(qw->slots);
	free(qw->free_list);
	qw->slots = NULL;
	qw->free_list = NULL;
	qw->bounce_pool = NULL;
	qw->pool_count = 0;
	qw->unreturned = NULL;
}

static int alloc_slots(struct queue_worker *qw)
{
	qw->nslots = qw->cfg.max_queue_size;
	qw->slots = calloc(qw->nslots, sizeof(*qw->slots));
	qw->free_list = calloc(qw->nslots, sizeof(*qw->free_list));
	qw->unreturned = calloc(qw->nslots, sizeof(*qw->unreturned));
	qw->bounce_pool = calloc(qw->pool_cap ? qw->pool_cap : 1, sizeof(*qw->bounce_pool));
	if (!qw->slots || !qw->free_list || !qw->unreturned || !qw->bounce_pool)
		return -ENOMEM;
	/* Room for the advertised segments plus header, status and a few
	 * region crossings; longer chains grow their slot's array. */
	int iov_cap =
	    (int)(qw->cfg.seg_count_max < BLK_REQUEST_MAX_IOV - 4 ? qw->cfg.seg_count_max + 4
								  : BLK_REQUEST_MAX_IOV);
	for (uint32_t i = 0; i < qw->nslots; i++) {
		if (blk_request_init(&qw->slots[i].req, iov_cap) < 0)
			return -ENOMEM;
		/* Popped from the end: hand out low indices first. */
		qw->free_list[i] = qw->nslots - 1 - i;
	}
	qw->free_count = qw->nslots;
	return 0;
}

static void set_limits(struct queue_worker *qw)
{
	const struct queue_worker_config *cfg = &qw->cfg;
	uint64_t advertised = (uint64_t)cfg->seg_count_max * cfg->seg_size_max;
	uint64_t max_bytes =
	    advertised > BLK_REQUEST_DEFAULT_MAX_BYTES ? advertised : BLK_REQUEST_DEFAULT_MAX_BYTES;
	qw->limits.capacity = bdev_sector_count(cfg->dev);
	qw->limits.read_only = bdev_is_read_only(cfg->dev);
	qw->limits.max_bytes = max_bytes & ~(uint64_t)(SECTOR_SIZE - 1);
	qw->alignment = bdev_buffer_alignment(cfg->dev);
	/* The common request fits a pooled buffer; larger ones get their own. */
	uint64_t pool_bytes = advertised < SECTOR_SIZE ? SECTOR_SIZE : advertised;
	pool_bytes = (pool_bytes + SECTOR_SIZE - 1) & ~(uint64_t)(SECTOR_SIZE - 1);
	uint64_t budget = pool_bytes * BOUNCE_BUDGET_REQUESTS;
	qw->pool_bytes = (size_t)pool_bytes;
	qw->bounce_budget = (size_t)(budget < BOUNCE_BUDGET_MIN ? BOUNCE_BUDGET_MIN : budget);
	uint64_t pool_cap = qw->bounce_budget / pool_bytes;
	qw->pool_cap = (uint32_t)(pool_cap < BOUNCE_POOL_MAX ? pool_cap : BOUNCE_POOL_MAX);
}

int queue_worker_io_init(struct queue_worker *qw)
{
	set_limits(qw);
	int rc = alloc_slots(qw);
	if (rc < 0)
		log_error("queue %u: cannot allocate request slots: %s", qw->cfg.index,
			  strerror(-rc));
	return rc;
}

/* One ublk hardware queue, served by its own thread.
 *
 * The thread owns an io_uring for the queue's commands and a channel of the
 * device. It waits in one place, io_uring_submit_and_wait on its ring, for
 * both kinds of event: a tag's FETCH (or COMMIT_AND_FETCH) completing means
 * a request arrived; a poll on the channel's completion fd completing means
 * the device finished something. Requests are issued on the tag's own
 * buffer: the kernel copied a write's data there before handing the request
 * over, and copies a read's data out of it when we commit.
 *
 * Every request is committed exactly once, failures with a negative errno:
 * a request never committed hangs in the kernel and its tag is lost for the
 * life of the device. */
#include "ublk/ublk_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/common.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/* user_data of the queue ring's entries: kind in the high half, tag below. */
enum cqe_kind { CQE_IO_COMMAND = 1, CQE_DEVICE_WAKE = 2, CQE_QUIT = 3 };
#define COMPLETIONS_PER_POLL 64

struct queue {
	const struct ublk_queue_config *cfg;
	struct io_uring ring;
	bool ring_ready;
	const struct ublk_wire_io_desc *descs; /* the kernel's, read-only */
	size_t descs_map_len;
	uint8_t *buffers; /* depth x buf_bytes, inside buffers_map */
	void *buffers_map;
	size_t buffers_map_len;
	struct iovec *iovs;
	struct ublk_request *requests; /* what each tag asked for */
	struct bdev_channel *ch;
	int completion_fd;
	bool wake_armed;
	/* Wait by reading the completion fd inside the ring (an eventfd: the
	 * read consumes its count without a syscall of ours), or, for an fd
	 * that cannot be read so (the lazy layer's epoll fd), by polling it
	 * and reading it afterwards. */
	bool wake_by_poll;
	uint64_t wake_count; /* the in-ring read's buffer */
	uint32_t fetch_opcode;
	uint32_t commit_opcode;
	uint32_t commands_in_kernel; /* FETCH / COMMIT_AND_FETCH not completed */
	uint32_t requests_in_device;
	bool added_since_submit;
	/* The tracker's time for the CQEs of one turn: read at the first
	 * request started in it (0: not yet), shared by the rest. */
	uint64_t batch_ns;
	bool stopping; /* the kernel aborted a command: the queue is going away */
	bool quitting; /* the main thread said so: stop waiting for the kernel */
	/* The kernel may still hold FETCH commands naming the buffers (the
	 * loop failed, or was told to quit before the kernel gave them back;
	 * closing the ring cancels them only later): then they stay mapped
	 * until the process exits. */
	bool keep_buffers;
};

static void *tag_buffer(const struct queue *q, uint16_t tag)
{
	return q->buffers + (size_t)tag * q->cfg->limits.buf_bytes;
}

static struct io_uring_sqe *get_sqe(struct queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
	if (!sqe) {
		/* The ring holds every tag's command plus the two polls, so
		 * this only happens if the kernel refused to take entries. */
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	return sqe;
}

static void queue_io_command(struct queue *q, uint32_t opcode, uint16_t tag, int32_t result)
{
	struct io_uring_sqe *sqe = get_sqe(q);
	if (!sqe) {
		log_error("ublk queue %u: no room to queue tag %u's command; the tag is lost",
			  q->cfg->q_id, tag);
		return;
	}
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = 0; /* fixed file 0: /dev/ublkcN */
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->cmd_op = opcode;
	sqe->user_data = ((uint64_t)CQE_IO_COMMAND << 32) | tag;
	struct ublk_wire_io_cmd cmd = {
	    .q_id = q->cfg->q_id,
	    .tag = tag,
	    .result = result,
	    .addr = (uint64_t)(uintptr_t)tag_buffer(q, tag),
	};
	memcpy(sqe->cmd, &cmd, sizeof(cmd));
	q->commands_in_kernel++;
}

static enum io_kind tracked_kind(uint8_t op)
{
	switch (op) {
	case UBLK_WIRE_OP_READ:
		return IO_KIND_READ;
	case UBLK_WIRE_OP_WRITE:
		return IO_KIND_WRITE;
	case UBLK_WIRE_OP_FLUSH:
		return IO_KIND_FLUSH;
	default:
		return IO_KIND_NONE; /* discard and write-zeroes are not shown */
	}
}

static void commit(struct queue *q, uint16_t tag, int32_t result)
{
	if (q->stopping)
		return; /* the kernel fails what is left when the queue goes */
	queue_io_command(q, q->commit_opcode, tag, result);
}

/* A request arrived on `tag`. */
static void start_request(struct queue *q, uint16_t tag)
{
	/* The descriptor is the kernel's memory: read it once. */
	struct ublk_wire_io_desc desc;
	memcpy(&desc, (const void *)&q->descs[tag], sizeof(desc));
	struct ublk_request *req = &q->requests[tag];
	*req = (struct ublk_request){
	    .op = (uint8_t)(desc.op_flags & 0xff),
	    .flags = desc.op_flags & ~0xffu,
	    .sector = desc.start_sector,
	    .sectors = desc.nr_sectors,
	};
	int rc =
	    ublk_request_start(q->ch, req, &q->cfg->limits, tag_buffer(q, tag), &q->iovs[tag], tag);
	if (rc < 0) {
		log_debug("ublk queue %u: tag %u: op %u at sector %llu, %u sectors refused: %s",
			  q->cfg->q_id, tag, req->op, (unsigned long long)req->sector, req->sectors,
			  strerror(-rc));
		io_tracker_count_error(q->cfg->tracker, IO_ERROR_BAD_REQUEST);
		commit(q, tag, rc);
		return;
	}
	enum io_kind kind = tracked_kind(req->op);
	if (kind != IO_KIND_NONE && q->cfg->tracker) {
		if (q->batch_ns == 0)
			q->batch_ns = now_ns();
		io_tracker_begin(q->cfg->tracker, tag, kind, req->sector, req->sectors,
				 q->batch_ns);
	}
	q->requests_in_device++;
	q->added_since_submit = true;
}

/* `done_ns`: when the batch of completions holding c was reaped. */
static void finish_request(struct queue *q, const struct bdev_completion *c, uint64_t done_ns)
{
	if (c->id >= q->cfg->depth) {
		log_error("ublk queue %u: completion for unknown tag %llu", q->cfg->q_id,
			  (unsigned long long)c->id);
		return;
	}
	uint16_t tag = (uint16_t)c->id;
	const struct ublk_request *req = &q->requests[tag];
	if (c->result < 0) {
		log_debug("ublk queue %u: tag %u: op %u at sector %llu failed: %s", q->cfg->q_id,
			  tag, req->op, (unsigned long long)req->sector, strerror(-c->result));
		io_tracker_count_error(q->cfg->tracker, c->result == BDEV_ERR_STRIPE_FAILED
							    ? IO_ERROR_FAILED_STRIPE
							    : IO_ERROR_IO);
	}
	if (tracked_kind(req->op) != IO_KIND_NONE)
		io_tracker_end(q->cfg->tracker, tag, done_ns);
	q->requests_in_device--;
	commit(q, tag, ublk_request_result(req, c->result));
}

static void drain_device(struct queue *q)
{
	if (q->added_since_submit) {
		q->added_since_submit = false;
		int rc = bdev_submit(q->ch);
		/* Refused operations stay queued and still complete through
		 * bdev_poll, so nothing is failed here. */
		if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR)
			log_debug("ublk queue %u: device submit: %s", q->cfg->q_id, strerror(-rc));
	}
	struct bdev_completion done[COMPLETIONS_PER_POLL];
	int n;
	while ((n = bdev_poll(q->ch, done, COMPLETIONS_PER_POLL)) > 0) {
		/* One clock read per batch: it costs as much as the tracking. */
		uint64_t done_ns = q->cfg->tracker ? now_ns() : 0;
		for (int i = 0; i < n; i++)
			finish_request(q, &done[i], done_ns);
	}
}

static void handle_cqe(struct queue *q, const struct io_uring_cqe *cqe)
{
	uint32_t kind = (uint32_t)(cqe->user_data >> 32);
	uint16_t tag = (uint16_t)(cqe->user_data & 0xffff);
	if (kind == CQE_QUIT) {
		q->quitting = true;
		q->stopping = true;
		return;
	}
	if (kind == CQE_DEVICE_WAKE) {
		q->wake_armed = false;
		/* EINVAL: not readable (an epoll fd); EAGAIN: the kernel
		 * does not wait on a non-blocking fd for us. Poll instead. */
		if ((cqe->res == -EINVAL || cqe->res == -EAGAIN) && !q->wake_by_poll) {
			log_debug("ublk queue %u: waiting on the completion fd by poll (%s)",
				  q->cfg->q_id, strerror(-cqe->res));
			q->wake_by_poll = true;
			return;
		}
		if (cqe->res < 0) {
			log_warn("ublk queue %u: cannot wait on the device's completion fd (%s); "
				 "polling it instead",
				 q->cfg->q_id, strerror(-cqe->res));
			q->completion_fd = -1;
			return;
		}
		if (!q->wake_by_poll)
			return;
		/* The lazy layer's epoll fd refuses the read and drains its
		 * members itself. */
		uint64_t count;
		if (read(q->completion_fd, &count, sizeof(count)) < 0 && errno != EAGAIN &&
		    errno != EINVAL)
			log_debug("ublk queue %u: draining the completion fd: %s", q->cfg->q_id,
				  strerror(errno));
		return;
	}
	q->commands_in_kernel--;
	if (cqe->res == UBLK_WIRE_IO_RES_OK) {
		if (tag < q->cfg->depth && !q->stopping)
			start_request(q, tag);
		return;
	}
	if (cqe->res == -ENODEV) {
		if (!q->stopping)
			log_debug("ublk queue %u: the kernel is stopping the queue", q->cfg->q_id);
		q->stopping = true;
		return;
	}
	/* The kernel refused our command (it should not): the tag cannot be
	 * fetched again. */
	log_error("ublk queue %u: tag %u: command refused by the kernel: %s; the tag is lost",
		  q->cfg->q_id, tag, strerror(-cqe->res));
}

static void arm_device_wake(struct queue *q)
{
	if (q->wake_armed || q->completion_fd < 0 || q->requests_in_device == 0)
		return;
	struct io_uring_sqe *sqe = get_sqe(q);
	if (!sqe)
		return; /* the loop spins instead */
	if (q->wake_by_poll)
		io_uring_prep_poll_add(sqe, q->completion_fd, POLLIN);
	else
		io_uring_prep_read(sqe, q->completion_fd, &q->wake_count, sizeof(q->wake_count), 0);
	sqe->user_data = (uint64_t)CQE_DEVICE_WAKE << 32;
	q->wake_armed = true;
}

/* Whether the loop may sleep: not while the device holds operations that
 * nothing will signal (an engine without a completion fd, or operations the
 * kernel has not taken yet). */
static bool may_sleep(const struct queue *q)
{
	if (q->requests_in_device == 0)
		return true;
	return q->wake_armed && !bdev_needs_submit(q->ch);
}

static bool finished(const struct queue *q)
{
	if (q->requests_in_device > 0)
		return false;
	/* Commands the kernel still holds are cancelled when the ring closes. */
	return q->quitting || (q->stopping && q->commands_in_kernel == 0);
}

static int serve(struct queue *q)
{
	while (!finished(q)) {
		arm_device_wake(q);
		int rc = io_uring_submit_and_wait(&q->ring, may_sleep(q) ? 1 : 0);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
			log_error("ublk queue %u: io_uring_submit_and_wait: %s", q->cfg->q_id,
				  strerror(-rc));
			return rc;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		q->batch_ns = 0;
		io_uring_for_each_cqe(&q->ring, head, cqe)
		{
			handle_cqe(q, cqe);
			seen++;
		}
		io_uring_cq_advance(&q->ring, seen);
		drain_device(q);
	}
	return 0;
}

static int map_descriptors(struct queue *q)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)q->cfg->depth * sizeof(struct ublk_wire_io_desc);
	len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
	void *map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, q->cfg->char_fd,
			 (off_t)ublk_wire_desc_offset(q->cfg->q_id, page));
	if (map == MAP_FAILED)
		return -errno;
	q->descs = map;
	q->descs_map_len = len;
	return 0;
}

static int create_ring(struct queue *q)
{
	/* Room for a command per tag plus the device wake and quit polls. */
	unsigned entries = (unsigned)q->cfg->depth + 2;
	/* The kernel completes our commands with task work: run it when we
	 * enter the ring anyway instead of interrupting us, and flag it so
	 * liburing enters while we spin on the device. */
	struct io_uring_params p = {.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG};
	int rc = io_uring_queue_init_params(entries, &q->ring, &p);
	if (rc == -EINVAL) { /* kernels before 5.19 */
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(entries, &q->ring, &p);
	}
	if (rc < 0)
		return rc;
	q->ring_ready = true;
	return io_uring_register_files(&q->ring, &q->cfg->char_fd, 1);
}

/* The tags' buffers: anonymous memory, so pages are only used once a request
 * of that size came (a malloc'ed and cleared block would cost the whole
 * queue_size x seg_size_max at once), and the kernel's overcommit check
 * refuses an impossible size here rather than the OOM killer later. Aligned
 * to the device's O_DIRECT alignment, which may exceed a page. */
static int map_buffers(struct queue *q, size_t bytes)
{
	size_t alignment = bdev_buffer_alignment(q->cfg->dev);
	if (bytes > SIZE_MAX - alignment)
		return -ENOMEM;
	size_t len = bytes + alignment;
	void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return -errno;
	q->buffers_map = map;
	q->buffers_map_len = len;
	uintptr_t start = ((uintptr_t)map + alignment - 1) & ~(uintptr_t)(alignment - 1);
	q->buffers = (uint8_t *)start;
	return 0;
}

static int allocate(struct queue *q, struct error *err)
{
	uint32_t depth = q->cfg->depth;
	size_t bytes = (size_t)depth * q->cfg->limits.buf_bytes;
	if (bytes / depth != q->cfg->limits.buf_bytes || map_buffers(q, bytes) < 0) {
		return error_set(err, -ENOMEM,
				 "ublk queue %u: cannot allocate %u I/O buffers of %u bytes (%zu "
				 "MiB): lower queue_size or seg_size_max",
				 q->cfg->q_id, depth, q->cfg->limits.buf_bytes, bytes >> 20);
	}
	q->iovs = calloc(depth, sizeof(*q->iovs));
	q->requests = calloc(depth, sizeof(*q->requests));
	if (!q->iovs || !q->requests)
		return error_set(err, -ENOMEM, "ublk queue %u: out of memory", q->cfg->q_id);
	return 0;
}

static int set_up(struct queue *q, struct error *err)
{
	const struct ublk_queue_config *cfg = q->cfg;
	/* Writeback to our own device may wait on us: take memory from the
	 * reserves the kernel keeps for I/O flushers instead of deadlocking. */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		log_debug("ublk queue %u: PR_SET_IO_FLUSHER: %s", cfg->q_id, strerror(errno));

	int rc = bdev_channel_create(cfg->dev, cfg->depth, &q->ch);
	if (rc < 0)
		return error_set(err, rc, "ublk queue %u: cannot create a device channel: %s",
				 cfg->q_id, strerror(-rc));
	q->completion_fd = bdev_completion_fd(q->ch);
	rc = allocate(q, err);
	if (rc < 0)
		return rc;
	rc = create_ring(q);
	if (rc < 0)
		return error_set(err, rc, "ublk queue %u: cannot create its io_uring: %s",
				 cfg->q_id, strerror(-rc));
	rc = map_descriptors(q);
	if (rc < 0)
		return error_set(err, rc, "ublk queue %u: cannot map the request descriptors: %s",
				 cfg->q_id, strerror(-rc));
	struct io_uring_sqe *sqe = get_sqe(q);
	io_uring_prep_poll_add(sqe, cfg->quit_fd, POLLIN);
	sqe->user_data = (uint64_t)CQE_QUIT << 32;
	q->fetch_opcode = ublk_wire_io_opcode(UBLK_WIRE_FETCH_REQ, cfg->ioctl_encode);
	q->commit_opcode = ublk_wire_io_opcode(UBLK_WIRE_COMMIT_AND_FETCH_REQ, cfg->ioctl_encode);
	for (uint32_t tag = 0; tag < cfg->depth; tag++)
		queue_io_command(q, q->fetch_opcode, (uint16_t)tag, -1);
	rc = io_uring_submit(&q->ring);
	if (rc < 0)
		return error_set(err, rc, "ublk queue %u: cannot submit the FETCH commands: %s",
				 cfg->q_id, strerror(-rc));
	return 0;
}

static void tear_down(struct queue *q)
{
	/* Closing the ring cancels commands the kernel still holds; the
	 * device channel waits for its operations before the buffers go. */
	if (q->ring_ready)
		io_uring_queue_exit(&q->ring);
	if (q->ch)
		bdev_channel_destroy(q->ch);
	if (q->descs)
		munmap((void *)q->descs, q->descs_map_len);
	if (q->buffers_map && !q->keep_buffers)
		munmap(q->buffers_map, q->buffers_map_len);
	free(q->iovs);
	free(q->requests);
}

static void set_phase(struct ublk_queue_thread *qt, enum ublk_queue_phase phase)
{
	pthread_mutex_lock(qt->lock);
	qt->phase = phase;
	pthread_cond_broadcast(qt->changed);
	pthread_mutex_unlock(qt->lock);
}

void *ublk_queue_thread_main(void *arg)
{
	struct ublk_queue_thread *qt = arg;
	qt->tid = gettid();

	struct queue q = {.cfg = &qt->cfg, .completion_fd = -1};
	/* This thread is the one that can tell why its queue did not start;
	 * the main thread only learns that it did not. */
	struct error err = {0};
	int rc = set_up(&q, &err);
	if (rc < 0) {
		error_default(&err, rc);
		log_error("%s", err.text);
		qt->exit_result = rc;
		tear_down(&q);
		set_phase(qt, UBLK_QUEUE_FAILED);
		eventfd_write(qt->exit_fd, 1);
		return NULL;
	}
	set_phase(qt, UBLK_QUEUE_READY);
	qt->exit_result = serve(&q);
	q.keep_buffers = qt->exit_result < 0 || q.commands_in_kernel > 0;
	tear_down(&q);
	log_debug("ublk queue %u: ended", qt->cfg.q_id);
	eventfd_write(qt->exit_fd, 1);
	return NULL;
}

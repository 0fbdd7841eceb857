/* A queue worker as the control thread sees it: creating and destroying
 * the thread, and handing it settings through the handshake described in
 * queue_worker_internal.h. */
#include "vhost/queue_worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/common.h"
#include "vhost/queue_worker_internal.h"

/* Publishes `want` and wakes the worker. Lock held. */
static void wake_worker(struct queue_worker *qw)
{
	uint64_t one = 1;
	__atomic_store_n(&qw->request_gen, qw->request_gen + 1, __ATOMIC_RELEASE);
	/* Our own non-blocking eventfd: EAGAIN means a wake-up is pending. */
	if (write(qw->control_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("queue %u: waking the worker failed: %s", qw->cfg.index, strerror(errno));
}

/* Publishes `want` and waits until the worker applied it. Lock held. */
static void post_settings(struct queue_worker *qw)
{
	if (qw->cfg.threadless) {
		qw->request_gen++;
		queue_worker_settle_threadless(qw);
		return;
	}
	wake_worker(qw);
	while (qw->applied_gen != qw->request_gen)
		pthread_cond_wait(&qw->cond, &qw->lock);
}

static void destroy_partial(struct queue_worker *qw)
{
	if (qw->control_fd >= 0)
		close(qw->control_fd);
	pthread_cond_destroy(&qw->cond);
	pthread_mutex_destroy(&qw->lock);
	free(qw);
}

int queue_worker_create(const struct queue_worker_config *cfg, struct queue_worker **out)
{
	if (!cfg->dev || cfg->max_queue_size == 0 || cfg->max_queue_size > VIRTQUEUE_MAX_SIZE ||
	    cfg->seg_count_max == 0 || cfg->seg_size_max == 0)
		return -EINVAL;
	struct queue_worker *qw = calloc(1, sizeof(*qw));
	if (!qw)
		return -ENOMEM;
	qw->cfg = *cfg;
	if (cfg->device_id)
		memcpy(qw->device_id, cfg->device_id, strnlen(cfg->device_id, VIRTIO_BLK_ID_BYTES));
	qw->cfg.device_id = qw->device_id;
	qw->want.kick_fd = -1;
	qw->want.call_fd = -1;
	qw->have = qw->want;
	qw->completion_fd = -1;
	pthread_mutex_init(&qw->lock, NULL);
	pthread_cond_init(&qw->cond, NULL);
	qw->control_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (qw->control_fd < 0) {
		int rc = -errno;
		destroy_partial(qw);
		return rc;
	}
	if (cfg->threadless) {
		int rc = queue_worker_thread_init(qw);
		if (rc < 0) {
			queue_worker_thread_fini(qw);
			destroy_partial(qw);
			return rc;
		}
		*out = qw;
		return 0;
	}
	/* Signals are for the control thread (thread_start blocks them all in
	 * the worker), so a SIGTERM never lands in the middle of its loop. */
	char name[32]; /* thread_start keeps the first 15 characters */
	snprintf(name, sizeof(name), "ubiblk-vq%u", cfg->index);
	int rc = thread_start(&qw->thread, name, queue_worker_thread_main, qw);
	if (rc < 0) {
		destroy_partial(qw);
		return rc;
	}
	pthread_mutex_lock(&qw->lock);
	while (!qw->init_done)
		pthread_cond_wait(&qw->cond, &qw->lock);
	rc = qw->init_result;
	pthread_mutex_unlock(&qw->lock);
	if (rc < 0) {
		pthread_join(qw->thread, NULL);
		destroy_partial(qw);
		return rc;
	}
	*out = qw;
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void queue_worker_destroy(struct queue_worker *qw)
{
	if (!qw)
		return;
	pthread_mutex_lock(&qw->lock);
	qw->want.exit = true;
	if (qw->cfg.threadless) {
		post_settings(qw);
		pthread_mutex_unlock(&qw->lock);
		queue_worker_thread_fini(qw);
	} else {
		/* Not post_settings(): the worker acknowledges an exit by returning. */
		wake_worker(qw);
		pthread_mutex_unlock(&qw->lock);
		pthread_join(qw->thread, NULL);
	}
	close_fd(&qw->want.kick_fd);
	close_fd(&qw->want.call_fd);
	guest_memory_unref(qw->want.mem);
	destroy_partial(qw);
}

int queue_worker_set_num(struct queue_worker *qw, uint32_t num)
{
	if (qw->started)
		return -EBUSY;
	if (num == 0 || num > qw->cfg.max_queue_size)
		return -EINVAL;
	pthread_mutex_lock(&qw->lock);
	qw->want.num = num;
	pthread_mutex_unlock(&qw->lock);
	return 0;
}

int queue_worker_set_addr(struct queue_worker *qw, uint64_t desc_gpa, uint64_t avail_gpa,
			  uint64_t used_gpa)
{
	if (qw->started)
		return -EBUSY;
	if (!virtqueue_rings_aligned(desc_gpa, avail_gpa, used_gpa))
		return -EINVAL;
	pthread_mutex_lock(&qw->lock);
	qw->want.desc_gpa = desc_gpa;
	qw->want.avail_gpa = avail_gpa;
	qw->want.used_gpa = used_gpa;
	qw->want.addr_set = true;
	pthread_mutex_unlock(&qw->lock);
	return 0;
}

int queue_worker_set_base(struct queue_worker *qw, uint16_t next_avail)
{
	if (qw->started)
		return -EBUSY;
	pthread_mutex_lock(&qw->lock);
	qw->want.next_avail = next_avail;
	pthread_mutex_unlock(&qw->lock);
	return 0;
}

/* Replaces an fd the worker may be polling or writing: the old one is closed
 * only after the worker has let go of it. */
static void replace_fd(struct queue_worker *qw, int *slot, int fd)
{
	/* The first line against a front end that would make us block on its
	 * eventfds; the worker does not rely on it (eventfd_io.h). */
	int rc = fd >= 0 ? fd_set_nonblocking(fd) : 0;
	if (rc < 0)
		log_warn("queue %u: cannot make fd %d non-blocking: %s", qw->cfg.index, fd,
			 strerror(-rc));
	pthread_mutex_lock(&qw->lock);
	int old = *slot;
	*slot = fd;
	post_settings(qw);
	pthread_mutex_unlock(&qw->lock);
	if (old >= 0 && old != fd)
		close(old);
}

void queue_worker_set_kick_fd(struct queue_worker *qw, int fd)
{
	replace_fd(qw, &qw->want.kick_fd, fd);
}

void queue_worker_set_call_fd(struct queue_worker *qw, int fd)
{
	replace_fd(qw, &qw->want.call_fd, fd);
}

void queue_worker_set_enabled(struct queue_worker *qw, bool enabled)
{
	pthread_mutex_lock(&qw->lock);
	qw->want.enabled = enabled;
	post_settings(qw);
	pthread_mutex_unlock(&qw->lock);
}

void queue_worker_set_event_idx(struct queue_worker *qw, bool event_idx)
{
	pthread_mutex_lock(&qw->lock);
	qw->want.event_idx = event_idx;
	post_settings(qw);
	pthread_mutex_unlock(&qw->lock);
}

void queue_worker_set_memory(struct queue_worker *qw, struct guest_memory *mem)
{
	pthread_mutex_lock(&qw->lock);
	struct guest_memory *old = qw->want.mem;
	qw->want.mem = mem ? guest_memory_ref(mem) : NULL;
	post_settings(qw);
	pthread_mutex_unlock(&qw->lock);
	guest_memory_unref(old);
}

int queue_worker_start(struct queue_worker *qw)
{
	if (qw->started)
		return -EBUSY;
	pthread_mutex_lock(&qw->lock);
	int rc = -EINVAL;
	if (qw->want.num != 0 && qw->want.addr_set && qw->want.mem && qw->want.kick_fd >= 0) {
		qw->want.run = true;
		post_settings(qw);
		rc = qw->start_result;
		if (rc < 0)
			qw->want.run = false;
	}
	pthread_mutex_unlock(&qw->lock);
	qw->started = rc == 0;
	return rc;
}

bool queue_worker_started(const struct queue_worker *qw)
{
	return qw->started;
}

uint16_t queue_worker_stop(struct queue_worker *qw)
{
	pthread_mutex_lock(&qw->lock);
	if (qw->started) {
		qw->want.run = false;
		post_settings(qw);
		qw->want.next_avail = qw->stopped_next_avail;
		qw->started = false;
	}
	uint16_t next_avail = qw->want.next_avail;
	int kick = qw->want.kick_fd;
	int call = qw->want.call_fd;
	qw->want.kick_fd = -1;
	qw->want.call_fd = -1;
	/* Let the worker forget the numbers before they are closed and reused. */
	post_settings(qw);
	pthread_mutex_unlock(&qw->lock);
	close_fd(&kick);
	close_fd(&call);
	return next_avail;
}

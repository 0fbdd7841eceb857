/* A queue worker's thread: applies the control thread's settings, runs
 * processing rounds, busy-polls for an adaptive window (poll_window.h, at
 * most poll_timeout_us) after the last activity and then sleeps in poll(2)
 * on its kick fd, its completion fd and its control eventfd. */
#include "vhost/queue_worker_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/common.h"

static void acknowledge(struct queue_worker *qw)
{
	qw->applied_gen = qw->seen_gen;
	pthread_cond_broadcast(&qw->cond);
}

static int start_queue(struct queue_worker *qw)
{
	if (!qw->mem)
		return -EINVAL;
	struct virtqueue *vq = &qw->vq;
	int rc = virtqueue_map(vq, qw->mem, qw->have.num, qw->have.desc_gpa, qw->have.avail_gpa,
			       qw->have.used_gpa);
	if (rc < 0)
		return rc;
	vq->next_avail = qw->have.next_avail;
	vq->next_used = virtqueue_read_used_idx(vq);
	vq->signalled_used = vq->next_used;
	vq->event_idx = qw->have.event_idx;
	vq->broken = false;
	qw->ring_mapped = true;
	qw->running = true;
	qw->bad_requests_logged = 0;
	virtqueue_disable_notify(vq);
	return 0;
}

/* Called with lock held, once nothing is in flight. */
static void finish_stop(struct queue_worker *qw)
{
	/* Leave the ring asking for kicks, as a driver expects from a device
	 * that is not polling it. */
	if (qw->ring_mapped)
		virtqueue_enable_notify(&qw->vq);
	qw->stopped_next_avail = qw->vq.next_avail;
	qw->running = false;
	qw->stopping = false;
	queue_worker_drop_unreturned(qw);
	qw->ring_mapped = false;
	qw->have.kick_fd = -1;
	qw->have.call_fd = -1;
	eventfd_io_forget(&qw->call_io);
	acknowledge(qw);
}

static void switch_memory(struct queue_worker *qw, struct guest_memory *mem)
{
	log_debug("queue %u: new memory table, %u requests in flight keep the old one",
		  qw->cfg.index, qw->in_flight);
	guest_memory_unref(qw->mem);
	qw->mem = mem ? guest_memory_ref(mem) : NULL;
	if (!qw->running)
		return;
	int rc = qw->mem ? virtqueue_map(&qw->vq, qw->mem, qw->vq.num, qw->have.desc_gpa,
					 qw->have.avail_gpa, qw->have.used_gpa)
			 : -EFAULT;
	qw->ring_mapped = rc == 0;
	if (rc < 0)
		log_error("queue %u: the rings are not mapped by the new memory table; the queue "
			  "stops until it is set up again",
			  qw->cfg.index);
	else
		queue_worker_return_unreturned(qw);
}

/* Applies `want`, lock held. Returns false when the acknowledgement waits
 * for a stop to finish (finish_stop() gives it). */
static bool apply_settings_locked(struct queue_worker *qw)
{
	qw->seen_gen = qw->request_gen;
	const struct worker_settings *want = &qw->want;
	struct worker_settings *have = &qw->have;
	bool was_event_idx = have->event_idx;

	if (want->mem != qw->mem)
		switch_memory(qw, want->mem);
	have->enabled = want->enabled;
	have->event_idx = want->event_idx;
	if (have->kick_fd != want->kick_fd)
		qw->kick_failed = false;
	have->kick_fd = want->kick_fd;
	/* A write still pending on the old call fd must not hold back signals
	 * to the new one; the old fd is closed once we acknowledge. */
	bool call_replaced = have->call_fd != want->call_fd;
	if (call_replaced)
		eventfd_io_forget(&qw->call_io);
	have->call_fd = want->call_fd;
	bool was_running = qw->running;
	if (qw->running && was_event_idx != have->event_idx) {
		qw->vq.event_idx = have->event_idx;
		qw->vq.signalled_used = qw->vq.next_used;
		/* Rings a new memory table left out are no guest memory of
		 * ours (the old mapping may be gone): nothing is written there.
		 * The rounds set the notification state again once they are
		 * mapped. */
		if (qw->ring_mapped)
			virtqueue_disable_notify(&qw->vq);
	}
	if (want->exit)
		qw->exiting = true;

	if (!qw->running && want->run && !want->exit) {
		have->num = want->num;
		have->desc_gpa = want->desc_gpa;
		have->avail_gpa = want->avail_gpa;
		have->used_gpa = want->used_gpa;
		have->next_avail = want->next_avail;
		qw->start_result = start_queue(qw);
	} else if (qw->running && (!want->run || want->exit)) {
		/* Acknowledged by finish_stop() once nothing is in flight. */
		log_debug("queue %u: stopping with %u requests in flight", qw->cfg.index,
			  qw->in_flight);
		qw->stopping = true;
		return false;
	}
	/* One signal when a running queue gets a call fd: at its start, and
	 * when the front end replaces the fd while it runs (QEMU swaps in a
	 * masked notifier and back when the guest masks or unmasks the queue's
	 * interrupt; a reconnect starts the queue again). A signal given to
	 * the old fd after the front end last looked at it is lost, as is one
	 * a crashed back end never gave, and with EVENT_IDX the driver asks
	 * for no other until it has seen it: the guest would wait for good. A
	 * spurious interrupt costs the driver one look at the used ring.
	 * libvhost-user (qemu-storage-daemon) signals every call fd it is
	 * given for the same reason. */
	if (qw->running && (call_replaced || !was_running))
		queue_worker_signal_guest(qw);
	acknowledge(qw);
	return true;
}

static void apply_settings(struct queue_worker *qw)
{
	pthread_mutex_lock(&qw->lock);
	apply_settings_locked(qw);
	pthread_mutex_unlock(&qw->lock);
}

void queue_worker_settle_threadless(struct queue_worker *qw)
{
	/* No round ever runs, so nothing is in flight and a stop completes at once. */
	if (!apply_settings_locked(qw) && qw->in_flight == 0)
		finish_stop(qw);
}

static bool settings_pending(const struct queue_worker *qw)
{
	return __atomic_load_n(&qw->request_gen, __ATOMIC_ACQUIRE) != qw->seen_gen;
}

static void drain_fd(int fd)
{
	uint64_t value;
	if (read(fd, &value, sizeof(value)) < 0 && errno != EAGAIN && errno != EINTR)
		log_debug("draining fd %d: %s", fd, strerror(errno));
}

/* Sleeps until a kick, a completion or a control request. */
static void wait_for_events(struct queue_worker *qw)
{
	struct pollfd fds[3];
	nfds_t n = 0;
	fds[n++] = (struct pollfd){.fd = qw->control_fd, .events = POLLIN};
	/* A disabled queue still drains its kicks: they are dropped. */
	struct pollfd *kick = NULL;
	if (qw->running && !qw->stopping && qw->have.kick_fd >= 0 && !qw->kick_failed) {
		kick = &fds[n++];
		*kick = (struct pollfd){.fd = qw->have.kick_fd, .events = POLLIN};
	}
	if (qw->in_flight > 0 && qw->completion_fd >= 0)
		fds[n++] = (struct pollfd){.fd = qw->completion_fd, .events = POLLIN};
	if (poll(fds, n, -1) < 0)
		return; /* EINTR: the caller loops */
	for (nfds_t i = 0; i < n; i++)
		if (&fds[i] != kick && (fds[i].revents & POLLIN))
			drain_fd(fds[i].fd);
	/* The kick fd is shared with the front end, which may have cleared
	 * O_NONBLOCK and emptied it since poll looked: a plain read could
	 * block for good. */
	if (kick && (kick->revents & POLLIN)) {
		int rc = eventfd_drain(kick->fd);
		if (rc < 0) {
			log_error("queue %u: the kick fd cannot be drained (%s); ignoring it",
				  qw->cfg.index, rc == -ENODATA ? "end of file" : strerror(-rc));
			qw->kick_failed = true;
		}
	}
	/* A kick fd that is not an eventfd could report errors forever; the
	 * front end gets no more kicks processed until it sends another. */
	if (kick && !qw->kick_failed && (kick->revents & (POLLERR | POLLHUP | POLLNVAL))) {
		log_error("queue %u: the kick fd reports an error; ignoring it", qw->cfg.index);
		qw->kick_failed = true;
	}
}

/* Whether the worker may go to sleep now, re-arming guest notifications on
 * the way: false when it must keep polling. */
static bool ready_to_sleep(struct queue_worker *qw, uint64_t idle_ns, uint64_t window_ns)
{
	bool busy_queue = qw->running || qw->in_flight > 0;
	if (busy_queue && idle_ns <= window_ns)
		return false;
	/* Engines without a completion fd are only ever polled, and nothing
	 * signals it for operations the kernel has not taken yet. */
	if (qw->in_flight > 0 &&
	    (qw->completion_fd < 0 || qw->submit_needed || bdev_needs_submit(qw->ch)))
		return false;
	if (!queue_worker_accepting(qw))
		return true;
	/* Polling mode: no kick will come. */
	if (qw->have.kick_fd < 0)
		return false;
	/* With every slot busy, or the bounce budget spent, a completion
	 * wakes us; heads can wait. */
	if (qw->free_count == 0 || qw->bounce_stalled)
		return true;
	if (virtqueue_enable_notify(&qw->vq)) {
		virtqueue_disable_notify(&qw->vq);
		return false;
	}
	return true;
}

/* Times this thread was preempted (involuntary context switches): while it
 * rises, something else wants the CPU a spin would hold (poll_window.h). */
static uint64_t thread_preemptions(void)
{
	struct rusage usage;
	if (getrusage(RUSAGE_THREAD, &usage) < 0)
		return 0;
	return (uint64_t)usage.ru_nivcsw;
}

static void worker_loop(struct queue_worker *qw)
{
	uint64_t last_activity = now_ns();
	qw->round_ns = last_activity;
	for (;;) {
		bool active = false;
		if (settings_pending(qw)) {
			apply_settings(qw);
			active = true;
		}
		active |= queue_worker_run_round(qw);
		if (qw->stopping && qw->in_flight == 0) {
			pthread_mutex_lock(&qw->lock);
			finish_stop(qw);
			pthread_mutex_unlock(&qw->lock);
		}
		if (qw->exiting && !qw->running && qw->in_flight == 0)
			return;
		uint64_t now = now_ns();
		qw->round_ns = now;
		if (active) {
			last_activity = now;
			continue;
		}
		if (poll_window_check_due(&qw->poll, now))
			poll_window_preemptions(&qw->poll, now, thread_preemptions());
		uint64_t window = poll_window_use(&qw->poll, now, qw->in_flight > 0);
		if (!ready_to_sleep(qw, now - last_activity, window))
			continue;
		wait_for_events(qw);
		if (queue_worker_accepting(qw))
			virtqueue_disable_notify(&qw->vq);
		uint64_t woke = now_ns();
		qw->round_ns = woke;
		poll_window_slept(&qw->poll, woke - last_activity);
		last_activity = woke;
	}
}

static void pin_to_cpu(const struct queue_worker *qw)
{
	int cpu = qw->cfg.cpu;
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	int rc = cpu < CPU_SETSIZE ? 0 : EINVAL;
	if (rc == 0) {
		CPU_SET(cpu, &set);
		rc = sched_setaffinity(0, sizeof(set), &set) < 0 ? errno : 0;
	}
	if (rc != 0)
		log_warn("queue %u: cannot pin to CPU %d (%s); running unpinned", qw->cfg.index,
			 cpu, strerror(rc));
}

int queue_worker_thread_init(struct queue_worker *qw)
{
	if (!qw->cfg.threadless) /* the caller's own thread is not ours to pin */
		pin_to_cpu(qw);
	uint64_t poll_us = qw->cfg.poll_timeout_us;
	poll_window_init(&qw->poll, poll_us > UINT64_MAX / 1000 ? UINT64_MAX : poll_us * 1000,
			 qw->cfg.poll_wake_cost_ns, now_ns(), thread_preemptions());
	/* Created on this thread: an io_uring is best used by the thread that
	 * set it up, and memory is first touched on the pinned CPU. */
	int rc = bdev_channel_create(qw->cfg.dev, qw->cfg.max_queue_size, &qw->ch);
	if (rc < 0) {
		log_error("queue %u: cannot create a device channel: %s", qw->cfg.index,
			  strerror(-rc));
		return rc;
	}
	qw->completion_fd = bdev_completion_fd(qw->ch);
	rc = eventfd_io_init(&qw->call_io);
	if (rc < 0)
		log_warn("queue %u: no io_uring for guest signals (%s); a front end that clears "
			 "O_NONBLOCK on its call fd can stall this queue",
			 qw->cfg.index, strerror(-rc));
	return queue_worker_io_init(qw);
}

void *queue_worker_thread_main(void *arg)
{
	struct queue_worker *qw = arg;
	int rc = queue_worker_thread_init(qw);
	pthread_mutex_lock(&qw->lock);
	qw->init_result = rc;
	qw->init_done = true;
	pthread_cond_broadcast(&qw->cond);
	pthread_mutex_unlock(&qw->lock);
	if (rc == 0)
		worker_loop(qw);
	queue_worker_thread_fini(qw);
	return NULL;
}

void queue_worker_thread_fini(struct queue_worker *qw)
{
	bdev_channel_destroy(qw->ch);
	qw->ch = NULL;
	eventfd_io_fini(&qw->call_io);
	queue_worker_io_fini(qw);
	guest_memory_unref(qw->mem);
	qw->mem = NULL;
}

/* One run from start to end: negotiate, plan, set up every queue, start the
 * queue threads together, watch the connection and signals while they run,
 * then stop the queues and gather the results. */
#include "bench/bench.h"

#include "bench/bench_queue.h"
#include "bench/frontend.h"
#include "bench/run_plan.h"
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

struct run {
	const struct bench_options *opts;
	struct bench_frontend fe;
	struct run_plan plan;
	struct bench_job job;
	struct bench_queue *queues;
	uint32_t queues_ready; /* initialised, to destroy */
	uint32_t threads_started;
};

static int setup_job(struct run *r)
{
	const struct bench_options *o = r->opts;
	struct bench_job *job = &r->job;
	job->mode = o->mode;
	job->block_size = r->plan.block_size;
	job->range_offset = r->plan.range_offset;
	job->range_blocks = r->plan.range_blocks;
	job->seed = r->plan.seed;
	job->runtime_ns = o->runtime_ns;
	job->io_count = o->io_count;
	job->queues = o->queues;
	job->rwmixread = o->rwmixread;
	job->wait = o->wait;
	job->timeout_ns = o->timeout_ns;
	job->can_flush = frontend_has_feature(&r->fe, VIRTIO_BLK_F_FLUSH);
	job->verify = r->plan.has_state ? &r->plan.state : NULL;
	job->verify_write = o->verify_phase != BENCH_VERIFY_READ;
	job->verify_read = o->verify_phase != BENCH_VERIFY_WRITE;
	atomic_init(&job->abort, BENCH_COMPLETED);
	atomic_init(&job->mismatch_lines, 0);
	atomic_init(&job->error_lines, 0);
	pthread_mutex_init(&job->start_lock, NULL);
	pthread_cond_init(&job->start_cond, NULL);
	job->done_fd = eventfd(0, EFD_CLOEXEC);
	if (job->done_fd < 0)
		return -errno;
	if (o->dump_path) {
		/* Not truncated: only the range read is written, the rest of an
		 * existing file stays as it was. */
		job->dump_fd = open(o->dump_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (job->dump_fd < 0) {
			int err = errno;
			log_error("--dump %s: %s", o->dump_path, strerror(err));
			return -err;
		}
	}
	return 0;
}

static int setup_queues(struct run *r)
{
	const struct bench_options *o = r->opts;
	size_t share =
	    bench_queue_memory_bytes(r->plan.ring_size, o->iodepth, r->plan.block_size,
				     frontend_has_feature(&r->fe, VIRTIO_RING_F_INDIRECT_DESC));
	int rc = frontend_share_memory(&r->fe, share * o->queues);
	if (rc < 0)
		return rc;
	r->queues = calloc(o->queues, sizeof(*r->queues));
	if (!r->queues)
		return -ENOMEM;
	for (uint32_t i = 0; i < o->queues; i++) {
		struct bench_queue *q = &r->queues[i];
		rc = bench_queue_init(q, &r->job, &r->fe, i, (char *)r->fe.mem + share * i,
				      r->plan.ring_size, o->iodepth, o->ncpus ? o->cpus[i] : -1);
		r->queues_ready = i + 1; /* even a failed init leaves q safe to destroy */
		if (rc < 0) {
			log_error("queue %u: setup: %s", i, strerror(-rc));
			return rc;
		}
		rc = frontend_start_queue(&r->fe, i, &q->ring, q->kick_fd, q->call_fd);
		if (rc < 0)
			return rc;
	}
	return r->fe.client.reply_ack ? 0 : frontend_sync(&r->fe);
}

static void open_start_gate(struct bench_job *job)
{
	pthread_mutex_lock(&job->start_lock);
	job->started = true;
	pthread_cond_broadcast(&job->start_cond);
	pthread_mutex_unlock(&job->start_lock);
}

/* Anything readable on the control socket while the queues run means the
 * backend went away: it has nothing to say unasked. */
static void check_connection(struct run *r)
{
	char byte;
	ssize_t n = recv(r->fe.client.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0) {
		log_error("backend sent an unsolicited message on the control socket");
		bench_job_abort(&r->job, BENCH_PROTOCOL);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		log_error("backend closed the connection during the run");
		bench_job_abort(&r->job, BENCH_BACKEND_LOST);
	}
}

/* Runs in the main thread while the queue threads work. SIGINT and SIGTERM
 * are blocked except inside ppoll, so they always interrupt it. */
static void watch(struct run *r, const sigset_t *wait_mask)
{
	uint32_t done = 0;
	bool socket_watched = true;
	while (done < r->threads_started) {
		struct pollfd fds[2] = {
		    {.fd = r->job.done_fd, .events = POLLIN},
		    {.fd = socket_watched ? r->fe.client.fd : -1, .events = POLLIN | POLLRDHUP},
		};
		int n = ppoll(fds, 2, NULL, wait_mask);
		if (n < 0 && errno == EINTR && stop_signal) {
			log_warn("signal %d: stopping after outstanding requests complete",
				 (int)stop_signal);
			stop_signal = 0;
			bench_job_abort(&r->job, BENCH_INTERRUPTED);
			continue;
		}
		if (n <= 0)
			continue;
		if (fds[1].revents) {
			check_connection(r);
			socket_watched = atomic_load(&r->job.abort) == BENCH_COMPLETED ||
					 atomic_load(&r->job.abort) == BENCH_INTERRUPTED;
		}
		uint64_t count;
		if ((fds[0].revents & POLLIN) && read(r->job.done_fd, &count, sizeof(count)) > 0)
			done += (uint32_t)count;
	}
}

static void start_and_watch(struct run *r)
{
	sigset_t stop_set, old_mask;
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGINT);
	sigaddset(&stop_set, SIGTERM);
	struct sigaction action = {.sa_handler = on_stop_signal}, old_int, old_term;
	sigemptyset(&action.sa_mask);
	stop_signal = 0;
	/* Blocked here except inside watch()'s ppoll, so a stop signal can
	 * only arrive where it interrupts the wait, never just before it. The
	 * queue threads block every signal (thread_start): they all come to
	 * this thread. */
	pthread_sigmask(SIG_BLOCK, &stop_set, &old_mask);
	sigaction(SIGINT, &action, &old_int);
	sigaction(SIGTERM, &action, &old_term);
	for (uint32_t i = 0; i < r->opts->queues; i++) {
		char name[32]; /* thread_start keeps the first 15 characters */
		snprintf(name, sizeof(name), "bench-queue%u", i);
		int rc =
		    thread_start(&r->queues[i].thread, name, bench_queue_thread, &r->queues[i]);
		if (rc < 0) {
			log_error("cannot start the thread of queue %u: %s", i, strerror(-rc));
			bench_job_abort(&r->job, BENCH_FAILED);
			break;
		}
		r->queues[i].thread_started = true;
		r->threads_started++;
	}
	open_start_gate(&r->job);
	sigset_t wait_mask = old_mask;
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGTERM);
	watch(r, &wait_mask);
	for (uint32_t i = 0; i < r->opts->queues; i++) {
		if (r->queues[i].thread_started)
			pthread_join(r->queues[i].thread, NULL);
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
}

static void stop_queues(struct run *r)
{
	int abort = atomic_load(&r->job.abort);
	/* A backend that is gone or hung would only make us wait. */
	if (abort != BENCH_COMPLETED && abort != BENCH_INTERRUPTED)
		return;
	for (uint32_t i = 0; i < r->queues_ready; i++) {
		uint32_t base;
		if (frontend_stop_queue(&r->fe, i, &base) < 0)
			break;
		if ((uint16_t)base != r->queues[i].ring.avail_next)
			log_warn("queue %u: device stopped at avail index %u, the bench published "
				 "%u",
				 i, base, r->queues[i].ring.avail_next);
	}
}

static void gather(const struct run *r, struct bench_report *rep)
{
	uint64_t first_start = UINT64_MAX, last_end = 0;
	latency_histogram_init(&rep->read.latency);
	latency_histogram_init(&rep->write.latency);
	for (uint32_t i = 0; i < r->threads_started; i++) {
		const struct bench_queue *q = &r->queues[i];
		if (q->start_ns < first_start)
			first_start = q->start_ns;
		if (q->end_ns > last_end)
			last_end = q->end_ns;
		rep->read.ios += q->read.ios;
		rep->read.bytes += q->read.bytes;
		latency_histogram_merge(&rep->read.latency, &q->read.latency);
		rep->write.ios += q->write.ios;
		rep->write.bytes += q->write.bytes;
		latency_histogram_merge(&rep->write.latency, &q->write.latency);
		rep->flushes += q->flushes;
		rep->io_errors += q->io_errors;
		rep->kicks += q->ring.kicks;
		rep->interrupts_waited += q->interrupts_waited;
		rep->blocks_written += q->blocks_written;
		rep->blocks_checked += q->blocks_checked;
		rep->blocks_mismatched += q->blocks_mismatched;
		rep->sectors_mismatched += q->sectors_mismatched;
	}
	rep->elapsed_s = last_end > first_start ? (double)(last_end - first_start) / 1e9 : 0.0;
	rep->abort = (enum bench_abort)atomic_load(&r->job.abort);
}

static void teardown(struct run *r)
{
	for (uint32_t i = 0; i < r->queues_ready; i++)
		bench_queue_destroy(&r->queues[i]);
	free(r->queues);
	if (r->job.done_fd >= 0)
		close(r->job.done_fd);
	if (r->job.dump_fd >= 0 && close(r->job.dump_fd) < 0)
		log_error("--dump %s: %s", r->opts->dump_path, strerror(errno));
	pthread_mutex_destroy(&r->job.start_lock);
	pthread_cond_destroy(&r->job.start_cond);
	if (r->plan.has_state) {
		int rc = verify_state_sync(&r->plan.state);
		if (rc < 0)
			log_error("verify state %s: cannot write: %s", r->opts->verify_state_path,
				  strerror(-rc));
	}
	run_plan_release(&r->plan);
	frontend_close(&r->fe);
}

int bench_run(const struct bench_options *opts, struct bench_report *report)
{
	memset(report, 0, sizeof(*report));
	struct run r = {.opts = opts, .job = {.done_fd = -1, .dump_fd = -1}};
	uint64_t optional = (opts->event_idx ? VHOST_FEATURE(VIRTIO_RING_F_EVENT_IDX) : 0) |
			    (opts->indirect ? VHOST_FEATURE(VIRTIO_RING_F_INDIRECT_DESC) : 0);
	int rc = frontend_connect(&r.fe, opts->socket_path, optional);
	if (rc < 0)
		return rc;
	rc = run_plan_make(&r.plan, opts, &r.fe);
	if (rc < 0) {
		frontend_close(&r.fe);
		return rc;
	}
	report->features = r.fe.features;
	report->protocol_features = r.fe.protocol_features;
	report->capacity_bytes = r.fe.capacity_bytes;
	report->device_queues = r.fe.device_queues;
	report->queue_size = r.plan.ring_size;
	report->mode = opts->mode;
	report->block_size = r.plan.block_size;
	report->range_offset = r.plan.range_offset;
	report->range_blocks = r.plan.range_blocks;
	report->seed = r.plan.seed;
	rc = setup_job(&r);
	if (rc == 0)
		rc = setup_queues(&r);
	if (rc == 0) {
		start_and_watch(&r);
		stop_queues(&r);
		gather(&r, report);
	}
	teardown(&r);
	return rc;
}

/* The worker thread. It runs every part until a whole round moves nothing,
 * then sleeps in poll(2) on its wake-up eventfd and the completion fds of
 * its channels: an idle worker, or one waiting for the disk, uses no CPU
 * (the reference spins on a core while anything is in flight). */
#include "fetch/worker_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

/* While operations are in flight the sleep is bounded, as a safety net for
 * an operation the kernel did not take (bdev_poll resubmits it); completions
 * themselves wake the thread at once. */
#define IN_FLIGHT_SLEEP_MS 100
#define RETRY_SUBMIT_MS	   5
#define POLL_FDS	   4

static void report_start(struct fetch_worker *w, int result, const char *what)
{
	pthread_mutex_lock(&w->start_lock);
	w->start_result = result;
	if (result < 0)
		snprintf(w->start_error, sizeof(w->start_error), "fetch worker: cannot open %s: %s",
			 what, strerror(-result));
	w->start_done = true;
	pthread_cond_signal(&w->start_cond);
	pthread_mutex_unlock(&w->start_lock);
}

/* Channels are created here: an io_uring is best used by the thread that
 * set it up. */
static int open_channels(struct fetch_worker *w)
{
	int rc = flusher_open(&w->flusher);
	if (rc < 0) {
		report_start(w, rc, "the metadata file");
		return rc;
	}
	rc = fetcher_open(&w->fetcher);
	if (rc < 0) {
		fetcher_close(&w->fetcher);
		flusher_close(&w->flusher);
		report_start(w, rc, "the disk or the source");
		return rc;
	}
	report_start(w, 0, NULL);
	return 0;
}

static bool take_requests(struct fetch_worker *w, struct stripe_fifo *fetch,
			  struct stripe_fifo *written)
{
	request_queue_take(&w->requests, fetch, written);
	bool progress = fetch->count > 0 || written->count > 0;
	uint64_t stripe;
	/* WRITTEN first: the guest write waits only for a metadata update. */
	while (stripe_fifo_pop(written, &stripe))
		if (!stripe_state_written(w->state, stripe))
			flusher_request(w, stripe, META_HEADER_WRITTEN);
	while (stripe_fifo_pop(fetch, &stripe))
		fetcher_request(w, stripe);
	return progress;
}

static bool run_round(struct fetch_worker *w, struct stripe_fifo *fetch,
		      struct stripe_fifo *written)
{
	bool progress = take_requests(w, fetch, written);
	if (fetcher_start(w))
		progress = true;
	if (fetcher_poll(w))
		progress = true;
	if (flusher_start(w))
		progress = true;
	if (flusher_poll(w))
		progress = true;
	fetcher_drop_source_if_done(w);
	return progress;
}

static int add_fd(struct pollfd *fds, int n, int fd)
{
	if (fd < 0)
		return n;
	fds[n].fd = fd;
	fds[n].events = POLLIN;
	fds[n].revents = 0;
	return n + 1;
}

static bool channels_busy(const struct fetch_worker *w)
{
	return (w->fetcher.disk && bdev_busy(w->fetcher.disk)) ||
	       (w->fetcher.source && source_busy(w->fetcher.source)) ||
	       (w->flusher.ch && bdev_busy(w->flusher.ch));
}

static void sleep_until_woken(struct fetch_worker *w)
{
	struct pollfd fds[POLL_FDS];
	int n = add_fd(fds, 0, w->requests.wake_fd);
	n = add_fd(fds, n, bdev_completion_fd(w->fetcher.disk));
	n = add_fd(fds, n, bdev_completion_fd(w->flusher.ch));
	if (w->fetcher.source)
		n = add_fd(fds, n, source_completion_fd(w->fetcher.source));
	int timeout = -1;
	if (w->fetcher.disk_submit_failed || w->flusher.submit_failed)
		timeout = RETRY_SUBMIT_MS;
	else if (channels_busy(w))
		timeout = IN_FLIGHT_SLEEP_MS;
	int rc = poll(fds, (nfds_t)n, timeout);
	if (rc < 0) {
		if (errno != EINTR) {
			log_error("fetch: poll failed: %s", strerror(errno));
			usleep(RETRY_SUBMIT_MS * 1000);
		}
		return;
	}
	uint64_t value;
	for (int i = 0; i < n; i++)
		if (fds[i].revents & POLLIN)
			if (read(fds[i].fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
				log_warn("fetch: cannot read eventfd %d: %s", fds[i].fd,
					 strerror(errno));
}

static bool stop_requested(struct fetch_worker *w)
{
	pthread_mutex_lock(&w->requests.lock);
	bool stopped = w->requests.stopped;
	pthread_mutex_unlock(&w->requests.lock);
	return stopped;
}

/* Requests still queued at shutdown fail like those in progress. */
static void fail_leftovers(struct fetch_worker *w, struct stripe_fifo *fetch,
			   struct stripe_fifo *written)
{
	request_queue_close(&w->requests, fetch, written);
	uint64_t stripe;
	while (stripe_fifo_pop(fetch, &stripe))
		if (worker_needs_fetch(w, stripe))
			worker_abandon(w, stripe);
	while (stripe_fifo_pop(written, &stripe))
		if (!stripe_state_written(w->state, stripe))
			worker_abandon(w, stripe);
	fetcher_fail_outstanding(w);
	flusher_fail_outstanding(w);
	if (w->abandoned > 0)
		log_info("fetch: worker stopped; %llu stripes still in progress fail from now on",
			 (unsigned long long)w->abandoned);
}

void *worker_thread_main(void *arg)
{
	struct fetch_worker *w = arg;
	pthread_setname_np(pthread_self(), "bgworker"); /* the reference's name */
	if (open_channels(w) < 0)
		return NULL;
	struct stripe_fifo fetch = {0}, written = {0};
	while (!stop_requested(w)) {
		bool progress = run_round(w, &fetch, &written);
		if (w->changed) {
			w->changed = false;
			request_queue_notify(&w->requests);
		}
		if (!progress)
			sleep_until_woken(w);
	}
	/* Channels first: closing them waits for the kernel to finish with
	 * every buffer. Nothing in flight is marked done. */
	fetcher_close(&w->fetcher);
	flusher_close(&w->flusher);
	fail_leftovers(w, &fetch, &written);
	if (w->changed)
		request_queue_notify(&w->requests);
	stripe_fifo_free(&fetch);
	stripe_fifo_free(&written);
	return NULL;
}

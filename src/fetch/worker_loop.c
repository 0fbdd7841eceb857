/* The worker thread, and the one place the worker's parts meet.
 *
 * Each round hands new requests to the fetcher and the flusher, runs every
 * part once, and drains the outcomes each call reported: a copied stripe
 * asks the flusher for its FETCHED bit; a durable or failed bit changes the
 * shared stripe state and tells the fetcher. Only this file writes the
 * shared state. When a whole round moves nothing the thread sleeps in
 * poll(2) on its wake-up eventfd and the completion fds of its channels: an
 * idle worker, or one waiting for the disk, uses no CPU (a spinning worker
 * would cost a core per disk while anything is in flight). */
#include "fetch/worker_internal.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

/* While operations are in flight the sleep is bounded, as a safety net for
 * an operation the kernel did not take (bdev_poll resubmits it); completions
 * themselves wake the thread at once. */
#define IN_FLIGHT_SLEEP_MS 100
#define RETRY_SUBMIT_MS	   5
#define POLL_FDS	   4

/* ---- outcomes: what a finished piece of work means for the others ---- */

static void header_durable(struct fetch_worker *w, uint64_t stripe, uint8_t bits)
{
	if (bits & META_HEADER_FETCHED) {
		fetcher_fetched(&w->fetcher, stripe);
		stripe_state_set_fetched(w->state, stripe);
		w->changed = true;
	}
	if (bits & META_HEADER_WRITTEN) {
		stripe_state_set_written(w->state, stripe);
		w->changed = true;
	}
}

static void header_failed(struct fetch_worker *w, uint64_t stripe, uint8_t bits)
{
	/* A Fetched stripe whose WRITTEN bit could not be stored becomes
	 * Failed too: the guest write waiting for it must fail, and the stripe
	 * counts as missing again (a later request copies it anew; no guest
	 * write can have reached it, since WRITTEN never became durable). */
	bool was_fetched = stripe_state_fetch(w->state, stripe) == STRIPE_FETCHED;
	stripe_state_set_failed(w->state, stripe);
	if (was_fetched)
		fetcher_lost(&w->fetcher, stripe);
	log_error("fetch: stripe %llu fails: its %s bit could not be stored in the metadata file",
		  (unsigned long long)stripe, (bits & META_HEADER_FETCHED) ? "FETCHED" : "WRITTEN");
	if (bits & META_HEADER_FETCHED)
		fetcher_persist_failed(&w->fetcher, stripe);
	w->changed = true;
}

static void fetch_failed(struct fetch_worker *w, uint64_t stripe)
{
	stripe_state_set_failed(w->state, stripe);
	w->changed = true;
}

/* Asks the flusher for a bit; it may be durable already, or refused. */
static void request_bit(struct fetch_worker *w, uint64_t stripe, uint8_t bit)
{
	switch (flusher_request(&w->flusher, stripe, bit)) {
	case FLUSHER_QUEUED:
		break;
	case FLUSHER_DURABLE:
		header_durable(w, stripe, bit);
		break;
	case FLUSHER_REFUSED:
		header_failed(w, stripe, bit);
		break;
	}
}

/* Empties the outcome list; `progress` passes through, for brevity. */
static bool drain(struct fetch_worker *w, bool progress)
{
	for (size_t i = 0; i < w->outcomes.count; i++) {
		const struct outcome *o = &w->outcomes.items[i];
		switch (o->kind) {
		case OUTCOME_COPIED:
			/* Data durable first, then its FETCHED bit. */
			request_bit(w, o->stripe, META_HEADER_FETCHED);
			break;
		case OUTCOME_FETCH_FAILED:
			fetch_failed(w, o->stripe);
			break;
		case OUTCOME_BITS_DURABLE:
			header_durable(w, o->stripe, o->bits);
			break;
		case OUTCOME_BITS_FAILED:
			header_failed(w, o->stripe, o->bits);
			break;
		}
	}
	w->outcomes.count = 0;
	return progress;
}

/* Shutdown: the stripe was still being worked on; it fails from now on. */
static void abandon(struct fetch_worker *w, uint64_t stripe)
{
	stripe_state_set_failed(w->state, stripe);
	w->abandoned++;
	w->changed = true;
}

/* ---- the thread ---- */

static void report_start(struct fetch_worker *w, int result, const char *what)
{
	pthread_mutex_lock(&w->start_lock);
	w->start_result = result;
	if (result < 0)
		error_set(&w->start_error, result, "fetch worker: cannot open %s: %s", what,
			  strerror(-result));
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
			request_bit(w, stripe, META_HEADER_WRITTEN);
	while (stripe_fifo_pop(fetch, &stripe))
		if (fetcher_request(&w->fetcher, stripe) < 0)
			fetch_failed(w, stripe);
	return progress;
}

static bool run_round(struct fetch_worker *w, struct stripe_fifo *fetch,
		      struct stripe_fifo *written)
{
	bool progress = take_requests(w, fetch, written);
	if (drain(w, fetcher_start(&w->fetcher, &w->outcomes)))
		progress = true;
	if (drain(w, fetcher_poll(&w->fetcher, &w->outcomes)))
		progress = true;
	if (flusher_start(&w->flusher))
		progress = true;
	if (drain(w, flusher_poll(&w->flusher, &w->outcomes)))
		progress = true;
	fetcher_drop_source_if_done(&w->fetcher);
	return progress;
}

static void sleep_until_woken(struct fetch_worker *w)
{
	int fds[POLL_FDS] = {w->requests.wake_fd, flusher_wait_fd(&w->flusher)};
	int count = 2 + fetcher_wait_fds(&w->fetcher, fds + 2);
	int timeout = -1;
	if (fetcher_submit_pending(&w->fetcher) || flusher_submit_pending(&w->flusher))
		timeout = RETRY_SUBMIT_MS;
	else if (fetcher_in_flight(&w->fetcher) || flusher_in_flight(&w->flusher))
		timeout = IN_FLIGHT_SLEEP_MS;
	int rc = eventfds_wait(fds, (size_t)count, timeout, "fetch");
	if (rc < 0) {
		log_error("fetch: poll failed: %s", strerror(-rc));
		usleep(RETRY_SUBMIT_MS * 1000);
	}
}

/* Requests still queued at shutdown fail like those in progress. */
static void fail_leftovers(struct fetch_worker *w, struct stripe_fifo *fetch,
			   struct stripe_fifo *written)
{
	request_queue_close(&w->requests, fetch, written);
	uint64_t stripe;
	while (stripe_fifo_pop(fetch, &stripe))
		if (fetcher_needs_fetch(&w->fetcher, stripe))
			abandon(w, stripe);
	while (stripe_fifo_pop(written, &stripe))
		if (!stripe_state_written(w->state, stripe))
			abandon(w, stripe);
	/* Every stripe somebody is waiting for fails, so no I/O thread waits
	 * for a worker that is gone. */
	uint64_t stripes = stripe_state_count(w->state);
	for (uint64_t s = 0; s < stripes; s++)
		if (fetcher_forget(&w->fetcher, s) && fetcher_needs_fetch(&w->fetcher, s))
			abandon(w, s);
	for (uint64_t s = 0; s < stripes; s++)
		if (flusher_forget(&w->flusher, s))
			abandon(w, s);
	if (w->abandoned > 0)
		log_info("fetch: worker stopped; %llu stripes still in progress fail from now on",
			 (unsigned long long)w->abandoned);
}

void *worker_thread_main(void *arg)
{
	struct fetch_worker *w = arg;
	if (open_channels(w) < 0)
		return NULL;
	struct stripe_fifo fetch = {0}, written = {0};
	while (!request_queue_stopped(&w->requests)) {
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

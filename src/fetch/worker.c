/* Starting and stopping the worker, the calls I/O threads make, and what a
 * durable (or failed) header update means for the shared stripe state. */
#include "fetch/worker_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "fetch/fetch_testing.h"

void worker_stat_add(uint64_t *counter, uint64_t value)
{
	/* One writer: a relaxed load and store suffice, readers see whole
	 * values. */
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + value,
			 __ATOMIC_RELAXED);
}

void worker_stat_max(uint64_t *counter, uint64_t value)
{
	if (value > __atomic_load_n(counter, __ATOMIC_RELAXED))
		__atomic_store_n(counter, value, __ATOMIC_RELAXED);
}

bool worker_needs_fetch(const struct fetch_worker *w, uint64_t stripe)
{
	enum stripe_fetch_state s = stripe_state_fetch(w->state, stripe);
	/* HAS_SOURCE from the metadata file, not only the shared state: a
	 * stripe without a source may be Failed (its WRITTEN bit could not be
	 * stored) and must never be overwritten from the source. */
	return (s == STRIPE_NOT_FETCHED || s == STRIPE_FAILED) &&
	       flusher_has_bit(&w->flusher, stripe, META_HEADER_HAS_SOURCE);
}

void worker_header_durable(struct fetch_worker *w, uint64_t stripe, uint8_t bits)
{
	if (bits & META_HEADER_FETCHED) {
		if (worker_needs_fetch(w, stripe) && w->fetcher.unfetched > 0)
			w->fetcher.unfetched--;
		stripe_state_set_fetched(w->state, stripe);
		fetcher_persisted(w, stripe);
		uint64_t sectors = 0;
		uint64_t first = stripe * w->fetcher.stripe_sectors;
		if (first < w->fetcher.source_sectors) {
			sectors = w->fetcher.source_sectors - first;
			if (sectors > w->fetcher.stripe_sectors)
				sectors = w->fetcher.stripe_sectors;
		}
		worker_stat_add(&w->stats.stripes_fetched, 1);
		worker_stat_add(&w->stats.bytes_fetched, sectors * SECTOR_SIZE);
		w->changed = true;
	}
	if (bits & META_HEADER_WRITTEN) {
		stripe_state_set_written(w->state, stripe);
		w->changed = true;
	}
}

void worker_header_failed(struct fetch_worker *w, uint64_t stripe, uint8_t bits)
{
	/* A Fetched stripe whose WRITTEN bit could not be stored becomes
	 * Failed too: the guest write waiting for it must fail, and the stripe
	 * counts as missing again (a later request copies it anew; no guest
	 * write can have reached it, since WRITTEN never became durable). */
	bool was_fetched = stripe_state_fetch(w->state, stripe) == STRIPE_FETCHED;
	stripe_state_set_failed(w->state, stripe);
	if (was_fetched && worker_needs_fetch(w, stripe))
		w->fetcher.unfetched++;
	log_error("fetch: stripe %llu fails: its %s bit could not be stored in the metadata file",
		  (unsigned long long)stripe, (bits & META_HEADER_FETCHED) ? "FETCHED" : "WRITTEN");
	if (bits & META_HEADER_FETCHED)
		fetcher_persist_failed(w, stripe);
	w->changed = true;
}

void worker_abandon(struct fetch_worker *w, uint64_t stripe)
{
	stripe_state_set_failed(w->state, stripe);
	w->abandoned++;
	w->changed = true;
}

static void set_error(char err[FETCH_ERROR_MAX], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(char err[FETCH_ERROR_MAX], const char *fmt, ...)
{
	if (!err)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, FETCH_ERROR_MAX, fmt, ap);
	va_end(ap);
}

/* Stripes the worker has to copy: HAS_SOURCE in the file, not fetched. */
static uint64_t count_unfetched(const struct stripe_state *state, const struct metadata *m)
{
	uint64_t stripes = stripe_state_count(state);
	uint64_t count = 0;
	for (uint64_t i = 0; i < stripes && i < m->header_count; i++) {
		enum stripe_fetch_state s = stripe_state_fetch(state, i);
		if ((s == STRIPE_NOT_FETCHED || s == STRIPE_FAILED) &&
		    (m->headers[i] & META_HEADER_HAS_SOURCE))
			count++;
	}
	return count;
}

/* The geometry checks of the reference worker, plus ours: the source's
 * stripe size must be the metadata's, and the metadata file must still
 * describe the disk. */
static int check_sizes(const struct fetch_worker_options *opts, const struct metadata *m,
		       bool source_needed, char err[FETCH_ERROR_MAX])
{
	uint64_t stripes = stripe_state_count(opts->state);
	uint32_t stripe_sectors = 1u << stripe_state_shift(opts->state);
	if (m->shift != stripe_state_shift(opts->state)) {
		set_error(err, "metadata stripe size changed: shift %u in the file, %u in use",
			  m->shift, stripe_state_shift(opts->state));
		return -EINVAL;
	}
	if (m->header_count < stripes) {
		set_error(err,
			  "metadata file too small: %llu stripe headers, the disk has %llu stripes",
			  (unsigned long long)m->header_count, (unsigned long long)stripes);
		return -EINVAL;
	}
	if (!source_needed)
		return 0;
	if (opts->source->stripe_sectors != stripe_sectors) {
		set_error(err, "source stripe size %u sectors does not match the metadata's %u",
			  opts->source->stripe_sectors, stripe_sectors);
		return -EINVAL;
	}
	uint64_t disk_sectors = bdev_sector_count(opts->disk);
	uint64_t source_sectors = stripe_source_sector_count(opts->source);
	if (disk_sectors < source_sectors) {
		set_error(err, "target device too small: disk %llu sectors, source %llu sectors",
			  (unsigned long long)disk_sectors, (unsigned long long)source_sectors);
		return -EINVAL;
	}
	uint64_t source_stripes = source_stripe_count(opts->source);
	if (source_stripes > m->header_count) {
		set_error(err, "source stripe count %llu exceeds metadata stripe count %llu",
			  (unsigned long long)source_stripes, (unsigned long long)m->header_count);
		return -EINVAL;
	}
	return 0;
}

static void worker_free(struct fetch_worker *w)
{
	fetcher_fini(&w->fetcher);
	flusher_fini(&w->flusher);
	request_queue_fini(&w->requests);
	pthread_mutex_destroy(&w->start_lock);
	pthread_cond_destroy(&w->start_cond);
	free(w);
}

static int build(struct fetch_worker *w, const struct fetch_worker_options *opts,
		 struct metadata *loaded, char err[FETCH_ERROR_MAX])
{
	uint64_t stripes = stripe_state_count(opts->state);
	uint32_t alignment = opts->alignment;
	if (alignment == 0)
		alignment = bdev_buffer_alignment(opts->disk);
	if (alignment < BUFFER_ALIGNMENT)
		alignment = BUFFER_ALIGNMENT;
	if (!is_power_of_two(alignment)) {
		set_error(err, "stripe buffer alignment %u is not a power of two", alignment);
		return -EINVAL;
	}
	int rc = request_queue_init(&w->requests, stripes);
	if (rc == 0)
		rc = fetcher_init(&w->fetcher, opts, alignment, opts->state);
	if (rc == 0) {
		rc = flusher_init(&w->flusher, opts->metadata, loaded, stripes);
		/* The flusher owns the headers from now on. */
		*loaded = (struct metadata){0};
	}
	if (rc < 0)
		set_error(err, "cannot set up the fetch worker: %s", strerror(-rc));
	return rc;
}

int fetch_worker_start(const struct fetch_worker_options *opts, struct fetch_worker **out,
		       char err[FETCH_ERROR_MAX])
{
	if (!opts || !opts->disk || !opts->metadata || !opts->source || !opts->state || !out) {
		if (opts)
			stripe_source_destroy(opts->source);
		set_error(err, "fetch worker: missing disk, metadata, source or stripe state");
		return -EINVAL;
	}
	struct fetch_worker *w = calloc(1, sizeof(*w));
	if (!w) {
		stripe_source_destroy(opts->source);
		set_error(err, "cannot set up the fetch worker: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&w->start_lock, NULL);
	pthread_cond_init(&w->start_cond, NULL);
	w->requests.wake_fd = -1;
	w->state = opts->state;
	w->fetcher.source = opts->source; /* freed with the worker on failure */

	struct metadata loaded = {0};
	struct error meta_err = {0};
	int rc =
	    meta_load(opts->metadata, stripe_state_disk_sectors(opts->state), &loaded, &meta_err);
	if (rc < 0) {
		set_error(err, "fetch worker: %s", meta_err.text);
		worker_free(w);
		return rc;
	}
	/* Like 0.4, which never opens the source once everything is fetched,
	 * a finished disk does not need its source to match any more. */
	uint64_t unfetched = count_unfetched(opts->state, &loaded);
	bool source_needed = unfetched > 0;
	rc = check_sizes(opts, &loaded, source_needed, err);
	if (rc == 0)
		rc = build(w, opts, &loaded, err);
	w->fetcher.unfetched = unfetched;
	meta_free(&loaded);
	if (rc < 0) {
		worker_free(w);
		return rc;
	}
	if (!source_needed) {
		stripe_source_destroy(w->fetcher.source);
		w->fetcher.source = NULL;
	}
	w->has_source = w->fetcher.source != NULL;

	rc = pthread_create(&w->thread, NULL, worker_thread_main, w);
	if (rc != 0) {
		set_error(err, "cannot start the fetch worker thread: %s", strerror(rc));
		worker_free(w);
		return -rc;
	}
	pthread_mutex_lock(&w->start_lock);
	while (!w->start_done)
		pthread_cond_wait(&w->start_cond, &w->start_lock);
	pthread_mutex_unlock(&w->start_lock);
	if (w->start_result < 0) {
		pthread_join(w->thread, NULL);
		set_error(err, "%s", w->start_error);
		rc = w->start_result;
		worker_free(w);
		return rc;
	}
	w->thread_running = true;
	*out = w;
	return 0;
}

void fetch_worker_shutdown(struct fetch_worker *w)
{
	if (!w || !w->thread_running)
		return;
	/* From here on requests get -ESHUTDOWN; what was queued stays in the
	 * worker's hands and fails there. */
	pthread_mutex_lock(&w->requests.lock);
	w->requests.stopped = true;
	pthread_mutex_unlock(&w->requests.lock);
	request_queue_wake(&w->requests);
	pthread_join(w->thread, NULL);
	w->thread_running = false;
}

void fetch_worker_stop(struct fetch_worker *w)
{
	if (!w)
		return;
	fetch_worker_shutdown(w);
	worker_free(w);
}

int fetch_worker_request_fetch(struct fetch_worker *w, uint64_t stripe)
{
	if (stripe < stripe_state_count(w->state) && stripe_state_ready(w->state, stripe))
		return 0;
	return request_queue_push(&w->requests, stripe, REQUEST_FETCH);
}

int fetch_worker_request_written(struct fetch_worker *w, uint64_t stripe)
{
	if (stripe < stripe_state_count(w->state) && stripe_state_written(w->state, stripe))
		return 0;
	return request_queue_push(&w->requests, stripe, REQUEST_WRITTEN);
}

int fetch_worker_subscribe(struct fetch_worker *w, int eventfd)
{
	return request_queue_subscribe(&w->requests, eventfd);
}

void fetch_worker_unsubscribe(struct fetch_worker *w, int eventfd)
{
	request_queue_unsubscribe(&w->requests, eventfd);
}

void fetch_worker_stats(const struct fetch_worker *w, struct fetch_stats *out)
{
	const struct fetch_stats *s = &w->stats;
	out->stripes_fetched = __atomic_load_n(&s->stripes_fetched, __ATOMIC_RELAXED);
	out->bytes_fetched = __atomic_load_n(&s->bytes_fetched, __ATOMIC_RELAXED);
	out->fetch_failures = __atomic_load_n(&s->fetch_failures, __ATOMIC_RELAXED);
	out->fetch_latency_ns_total = __atomic_load_n(&s->fetch_latency_ns_total, __ATOMIC_RELAXED);
	out->fetch_latency_ns_max = __atomic_load_n(&s->fetch_latency_ns_max, __ATOMIC_RELAXED);
	out->metadata_writes = __atomic_load_n(&s->metadata_writes, __ATOMIC_RELAXED);
	out->metadata_failures = __atomic_load_n(&s->metadata_failures, __ATOMIC_RELAXED);
}

int fetch_worker_thread_cpu_ns(const struct fetch_worker *w, uint64_t *ns)
{
	if (!w->thread_running)
		return -ESRCH;
	clockid_t clock;
	int rc = pthread_getcpuclockid(w->thread, &clock);
	if (rc != 0)
		return -rc;
	struct timespec ts;
	if (clock_gettime(clock, &ts) < 0)
		return -errno;
	*ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	return 0;
}

bool fetch_worker_has_source(const struct fetch_worker *w)
{
	return __atomic_load_n(&w->has_source, __ATOMIC_ACQUIRE);
}

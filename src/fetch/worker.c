/* Starting and stopping the worker, the calls I/O threads make, and the
 * stats. */
#include "fetch/worker_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

/* Geometry checks before any byte is copied: the source must fit the disk and
 * the metadata, the source's stripe size must be the metadata's, and the
 * metadata file must still describe the disk. */
static int check_sizes(const struct fetch_worker_options *opts, const struct metadata *m,
		       bool source_needed, struct error *err)
{
	uint64_t stripes = stripe_state_count(opts->state);
	uint32_t stripe_sectors = 1u << stripe_state_shift(opts->state);
	if (m->shift != stripe_state_shift(opts->state)) {
		return error_set(err, -EINVAL,
				 "metadata stripe size changed: shift %u in the file, %u in use",
				 m->shift, stripe_state_shift(opts->state));
	}
	if (m->header_count < stripes) {
		return error_set(
		    err, -EINVAL,
		    "metadata file too small: %llu stripe headers, the disk has %llu stripes",
		    (unsigned long long)m->header_count, (unsigned long long)stripes);
	}
	if (!source_needed)
		return 0;
	if (opts->source->stripe_sectors != stripe_sectors) {
		return error_set(err, -EINVAL,
				 "source stripe size %u sectors does not match the metadata's %u",
				 opts->source->stripe_sectors, stripe_sectors);
	}
	uint64_t disk_sectors = bdev_sector_count(opts->disk);
	uint64_t source_sectors = stripe_source_sector_count(opts->source);
	if (disk_sectors < source_sectors) {
		return error_set(
		    err, -EINVAL, "target device too small: disk %llu sectors, source %llu sectors",
		    (unsigned long long)disk_sectors, (unsigned long long)source_sectors);
	}
	uint64_t source_stripes = source_stripe_count(opts->source);
	if (source_stripes > m->header_count) {
		return error_set(
		    err, -EINVAL, "source stripe count %llu exceeds metadata stripe count %llu",
		    (unsigned long long)source_stripes, (unsigned long long)m->header_count);
	}
	return 0;
}

static void worker_free(struct fetch_worker *w)
{
	fetcher_fini(&w->fetcher);
	flusher_fini(&w->flusher);
	outcome_list_fini(&w->outcomes);
	request_queue_fini(&w->requests);
	pthread_mutex_destroy(&w->start_lock);
	pthread_cond_destroy(&w->start_cond);
	free(w);
}

static int build(struct fetch_worker *w, const struct fetch_worker_options *opts,
		 struct metadata *loaded, struct error *err)
{
	uint64_t stripes = stripe_state_count(opts->state);
	uint32_t alignment = opts->alignment;
	if (alignment == 0)
		alignment = bdev_buffer_alignment(opts->disk);
	if (alignment < BUFFER_ALIGNMENT)
		alignment = BUFFER_ALIGNMENT;
	if (!is_power_of_two(alignment)) {
		return error_set(err, -EINVAL, "stripe buffer alignment %u is not a power of two",
				 alignment);
	}
	int rc = request_queue_init(&w->requests, stripes);
	if (rc == 0)
		rc = outcome_list_init(&w->outcomes, OUTCOMES_MAX);
	if (rc == 0)
		rc = fetcher_init(&w->fetcher, opts->source, opts->disk, opts->state, loaded,
				  opts->autofetch, alignment);
	/* The flusher takes the headers. */
	if (rc == 0)
		rc = flusher_init(&w->flusher, opts->metadata, loaded, stripes);
	if (rc < 0)
		return error_set(err, rc, "cannot set up the fetch worker: %s", strerror(-rc));
	return 0;
}

int fetch_worker_start(const struct fetch_worker_options *opts, struct fetch_worker **out,
		       struct error *err)
{
	if (!opts || !opts->disk || !opts->metadata || !opts->source || !opts->state || !out) {
		if (opts)
			stripe_source_destroy(opts->source);
		return error_set(err, -EINVAL,
				 "fetch worker: missing disk, metadata, source or stripe state");
	}
	struct fetch_worker *w = calloc(1, sizeof(*w));
	if (!w) {
		stripe_source_destroy(opts->source);
		return error_set(err, -ENOMEM, "cannot set up the fetch worker: out of memory");
	}
	pthread_mutex_init(&w->start_lock, NULL);
	pthread_cond_init(&w->start_cond, NULL);
	w->requests.wake_fd = -1;
	w->state = opts->state;
	/* Freed with the worker on failure; fetcher_init() takes it over. */
	w->fetcher.source = opts->source;

	struct metadata loaded = {0};
	int rc = meta_load(opts->metadata, stripe_state_disk_sectors(opts->state), &loaded, err);
	if (rc < 0) {
		error_default(err, rc);
		error_prefix(err, "fetch worker: ");
		worker_free(w);
		return rc;
	}
	/* A finished disk does not need its source to match any more (the
	 * fetcher closes it at once). */
	bool source_needed = fetcher_count_unfetched(opts->state, &loaded) > 0;
	rc = check_sizes(opts, &loaded, source_needed, err);
	if (rc == 0)
		rc = build(w, opts, &loaded, err);
	meta_free(&loaded);
	if (rc < 0) {
		worker_free(w);
		return rc;
	}

	rc = thread_start(&w->thread, "bgworker", worker_thread_main, w);
	if (rc < 0) {
		error_set(err, rc, "cannot start the fetch worker thread: %s", strerror(-rc));
		worker_free(w);
		return rc;
	}
	pthread_mutex_lock(&w->start_lock);
	while (!w->start_done)
		pthread_cond_wait(&w->start_cond, &w->start_lock);
	pthread_mutex_unlock(&w->start_lock);
	if (w->start_result < 0) {
		pthread_join(w->thread, NULL);
		error_set(err, w->start_result, "%s", w->start_error.text);
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
	request_queue_stop(&w->requests);
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
	*out = (struct fetch_stats){0};
	fetcher_stats(&w->fetcher, out);
	flusher_stats(&w->flusher, out);
}

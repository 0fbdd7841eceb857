/* service_status: see service_status.h.
 *
 * Threads: the main thread starts and ends the reporter and usually sends
 * READY=1 (from the front end's ready hook); the reporter thread refreshes
 * STATUS= and sends STOPPING=1 when the signal handler wakes it. Everything
 * sent and remembered is under one mutex, so READY=1 always comes before
 * any refresh and nothing follows STOPPING=1 but the end. The signal
 * handler only sets a flag and writes an eventfd. */
#include "service_status.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/common.h"

#define SERVING_MAX 256
#define STATUS_MAX  512

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Under lock. */
static struct {
	const struct stripe_state *stripes;
	const struct fetch_worker *worker;
	char serving[SERVING_MAX];
	char last_status[STATUS_MAX];
	bool ready_sent;
	bool stopping_sent;
	bool quit;
	bool thread_running;
	pthread_t thread;
} st;

/* Set by the signal handler on the main thread, read by the reporter. */
static atomic_int stop_asked;
/* Created by the first service_status_start and never closed: the signal
 * handler may be about to write to it, and a closed number could be reused. */
static atomic_int wake_fd = -1;

void service_status_format(char *buf, size_t len, const char *serving, uint64_t source,
			   uint64_t fetched, uint64_t failed)
{
	if (source == 0) {
		snprintf(buf, len, "%s", serving);
	} else if (fetched >= source) {
		snprintf(buf, len, "%s; hydration complete (%llu stripes)", serving,
			 (unsigned long long)source);
	} else {
		/* fetched < source, so the product stays far below 2^64 for
		 * any disk a metadata file can describe. */
		unsigned long long percent = (unsigned long long)(fetched * 100 / source);
		int n = snprintf(buf, len, "%s; hydration %llu/%llu stripes (%llu%%)", serving,
				 (unsigned long long)fetched, (unsigned long long)source, percent);
		if (failed && n >= 0 && (size_t)n < len)
			snprintf(buf + n, len - (size_t)n, ", %llu failed",
				 (unsigned long long)failed);
	}
}

/* Under lock. */
static void current_status(char *buf, size_t len)
{
	uint64_t total = 0, source = 0, fetched = 0;
	struct fetch_stats stats = {0};
	if (st.stripes)
		stripe_state_counts(st.stripes, &total, &source, &fetched);
	if (st.worker)
		fetch_worker_stats(st.worker, &stats);
	service_status_format(buf, len, st.serving, source, fetched, stats.stripes_failed);
}

/* Under lock: sends "<prefix>STATUS=<now>" when the text changed or a
 * prefix (READY=1) must go anyway. */
static void send_status(const char *prefix)
{
	char status[STATUS_MAX];
	current_status(status, sizeof(status));
	if (!prefix[0] && strcmp(status, st.last_status) == 0)
		return;
	char message[STATUS_MAX + 32];
	snprintf(message, sizeof(message), "%sSTATUS=%s", prefix, status);
	service_notify(message);
	snprintf(st.last_status, sizeof(st.last_status), "%s", status);
}

/* Under lock. */
static void send_stopping(void)
{
	if (st.stopping_sent)
		return;
	st.stopping_sent = true;
	service_notify("STOPPING=1\nSTATUS=stopping");
}

static void *reporter_main(void *arg)
{
	(void)arg;
	int fd = atomic_load(&wake_fd);
	for (;;) {
		/* A timeout or a wake-up: look either way. */
		eventfds_wait(&fd, 1, SERVICE_STATUS_INTERVAL_MS, "service status");
		pthread_mutex_lock(&lock);
		if (atomic_load(&stop_asked))
			send_stopping();
		bool quit = st.quit;
		if (!quit && st.ready_sent && !st.stopping_sent)
			send_status("");
		pthread_mutex_unlock(&lock);
		if (quit)
			return NULL;
	}
}

void service_status_start(const struct stripe_state *stripes, const struct fetch_worker *worker)
{
	if (!service_notify_enabled())
		return;
	pthread_mutex_lock(&lock);
	st.stripes = stripes;
	st.worker = worker;
	st.quit = false;
	st.ready_sent = false;
	st.stopping_sent = false;
	st.last_status[0] = '\0';
	int rc = 0;
	if (atomic_load(&wake_fd) < 0) {
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd >= 0)
			atomic_store(&wake_fd, fd);
		else
			rc = -errno;
	}
	if (rc == 0)
		rc = thread_start(&st.thread, "notify", reporter_main, NULL);
	if (rc == 0)
		st.thread_running = true;
	else
		log_debug("service status reporter not started: %s", strerror(-rc));
	pthread_mutex_unlock(&lock);
	/* A stop asked before the eventfd existed must still be seen. */
	if (atomic_load(&stop_asked))
		service_status_stop_requested();
}

void service_status_ready(const char *serving)
{
	if (!service_notify_enabled())
		return;
	pthread_mutex_lock(&lock);
	if (!st.ready_sent) {
		st.ready_sent = true;
		snprintf(st.serving, sizeof(st.serving), "%s", serving);
		send_status("READY=1\n");
	}
	pthread_mutex_unlock(&lock);
}

void service_status_stop_requested(void)
{
	int saved_errno = errno;
	atomic_store(&stop_asked, 1);
	int fd = atomic_load(&wake_fd);
	if (fd >= 0) {
		uint64_t one = 1;
		ssize_t written = write(fd, &one, sizeof(one));
		(void)written; /* a full counter still wakes the reporter */
	}
	errno = saved_errno;
}

void service_status_end(void)
{
	if (!service_notify_enabled())
		return;
	pthread_mutex_lock(&lock);
	st.quit = true;
	bool running = st.thread_running;
	st.thread_running = false;
	pthread_mutex_unlock(&lock);
	if (running) {
		int fd = atomic_load(&wake_fd);
		uint64_t one = 1;
		ssize_t written = write(fd, &one, sizeof(one));
		(void)written;
		pthread_join(st.thread, NULL);
	}
	pthread_mutex_lock(&lock);
	send_stopping();
	st.stripes = NULL;
	st.worker = NULL;
	pthread_mutex_unlock(&lock);
}

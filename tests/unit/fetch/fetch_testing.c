/* The worker views of fetch_testing.h. The thread's CPU time needs the
 * worker's thread handle, which only the worker's internal header shows. */
#include "fetch_testing.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "fetch/worker_internal.h"

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
	struct fetch_stats stats;
	fetch_worker_stats(w, &stats);
	return stats.source_connected;
}

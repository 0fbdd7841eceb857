/* What a daemon tells its service manager through systemd's notify protocol
 * (service_notify in common.h; docs/systemd.md): READY=1 once it really
 * serves, STOPPING=1 as soon as a stop begins, and a STATUS= line: what it
 * serves and, for a lazily fetched disk, the hydration progress ("serving
 * /run/ubiblk/disk1.sock; hydration 428/4608 stripes (9%)"), refreshed every
 * few seconds and sent only when it changed.
 *
 * One per process (the daemons serve one thing each). Without NOTIFY_SOCKET
 * nothing is started and every call is a no-op, so the daemons call these
 * unconditionally. A failure to notify never stops a daemon. */
#ifndef UBIBLK_BIN_SERVICE_STATUS_H
#define UBIBLK_BIN_SERVICE_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "fetch/fetch.h"
#include "meta/meta.h"

/* Seconds between two looks at the hydration progress. */
#define SERVICE_STATUS_INTERVAL_MS 2000

/* Main thread, before serving. Starts the reporter thread (thread_start)
 * that refreshes STATUS= and sends STOPPING=1 after a stop request.
 * `stripes` and `worker` are NULL for a disk without metadata; they are
 * borrowed and must outlive service_status_end(). A reporter that cannot
 * start is logged at debug level and leaves READY=1 and STOPPING=1 to the
 * calling threads. */
void service_status_start(const struct stripe_state *stripes, const struct fetch_worker *worker);

/* From the thread that just made the service usable (the vhost-user socket
 * accepts connections, /dev/ublkbN is started, the TCP port listens):
 * sends READY=1 with the first STATUS= line, which begins with `serving`
 * ("serving /run/ubiblk/disk1.sock"). Once; later calls are ignored. */
void service_status_ready(const char *serving);

/* Async-signal-safe (the daemons' SIGINT/SIGTERM handler): a stop begins.
 * The reporter sends STOPPING=1 at once, while the front end finishes the
 * requests in flight. */
void service_status_stop_requested(void);

/* Main thread, after serving and before `stripes` and `worker` go away:
 * sends STOPPING=1 if nobody did yet (the front end ended by itself) and
 * stops the reporter. */
void service_status_end(void);

/* The STATUS= text (no "STATUS=") into buf: `serving`, then for a disk with
 * stripes to fetch (source > 0) "; hydration F/S stripes (P%)" while
 * fetched < source, with ", N failed" when stripes were given up on, or
 * "; hydration complete (S stripes)". P is rounded down, so 100% only when
 * complete. */
void service_status_format(char *buf, size_t len, const char *serving, uint64_t source,
			   uint64_t fetched, uint64_t failed);

#endif

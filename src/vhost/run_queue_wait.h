/* How long the calling thread has waited on a run queue, runnable but not
 * running: the second field of /proc/thread-self/schedstat (the kernel's
 * sched_info run_delay, in ns). It grows when other threads want the same
 * CPUs, which is how a queue worker tells a busy host (poll_window.h).
 *
 * The fd is the opening thread's own: thread-self is resolved at open, so
 * only that thread may read it. */
#ifndef UBIBLK_VHOST_RUN_QUEUE_WAIT_H
#define UBIBLK_VHOST_RUN_QUEUE_WAIT_H

#include <stdint.h>

/* Returns an fd for run_queue_wait_read(), or -errno (a kernel without
 * schedstat: no contention is ever seen). */
int run_queue_wait_open(void);
/* Returns 0 with *wait_ns set, or -errno. */
int run_queue_wait_read(int fd, uint64_t *wait_ns);

#endif

/* How long a queue worker busy-polls after its last activity before it
 * re-arms notifications and sleeps: a window that adapts to the traffic and
 * to the host, after QEMU's adjust_polling_time() (util/aio-posix.c).
 *
 * - Each sleep teaches the window: the time from the last activity to the
 *   wake-up (polling plus sleeping) is what a poll would have had to wait.
 *   Shorter than the bound (poll_queue_timeout_us): the window doubles,
 *   from POLL_WINDOW_START_NS, so the next gap like it is caught without a
 *   sleep and a wake-up. Longer than the bound: polling would not have
 *   caught it, the window halves (to 0 below the start). Work found while
 *   polling teaches nothing: the window was right.
 * - The window never exceeds the bound; a bound of 0 never polls.
 * - A busy host: when the thread waited on a run queue for more than
 *   1/POLL_WINDOW_CONTENDED_SHARE of the wall time between two samples,
 *   other threads want our CPU (vCPUs, the client, the kernel's completion
 *   work). A long spin then takes their time and costs us our slice, so for
 *   POLL_WINDOW_BACKOFF_NS the bound drops to POLL_WINDOW_CONTENDED_MAX_NS,
 *   about what a sleep and a wake-up cost: a spin that catches nothing
 *   costs no more than sleeping at once would have, and one that does
 *   (a client answering from its own spin) saves the wake-up. Not 0: with
 *   a polling client on a busy host, a worker that sleeps after every batch
 *   waits for a CPU at every wake-up (measured: 1.0M instead of 3.8M IOPS
 *   on the null engine at iodepth 32).
 *
 * Pure: times come from the caller (queue_worker_thread.c reads the clock
 * and the thread's schedstat); a window belongs to one worker thread. */
#ifndef UBIBLK_VHOST_POLL_WINDOW_H
#define UBIBLK_VHOST_POLL_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

/* The first window after none: a few µs catch a client that answers from a
 * spin of its own, and cost little when nothing comes. */
#define POLL_WINDOW_START_NS 4000ull
/* Run-queue wait is sampled at most this often. */
#define POLL_WINDOW_SAMPLE_NS 1000000ull
/* Waiting on a run queue for more than 1/8 of the time means contention. */
#define POLL_WINDOW_CONTENDED_SHARE 8
/* The bound while the host is busy: about what a sleep and a wake-up cost
 * here (an eventfd round trip between two threads of an idle 2-CPU VM is
 * 10-20 µs), so a spin that catches nothing costs no more than sleeping at
 * once would have. */
#define POLL_WINDOW_CONTENDED_MAX_NS 16000ull
/* How long the lower bound holds after contention was seen. */
#define POLL_WINDOW_BACKOFF_NS 100000000ull

struct poll_window {
	uint64_t max_ns; /* the bound: poll_queue_timeout_us */
	uint64_t ns;	 /* the current window */
	bool backing_off;
	uint64_t backoff_end_ns;
	/* The last contention sample; none yet when sample_ns is 0. */
	uint64_t sample_ns;
	uint64_t sample_wait_ns;
	/* Counters for tests and logs. */
	uint64_t backoffs;
};

void poll_window_init(struct poll_window *w, uint64_t max_ns);
/* The window at `now_ns`: keep polling while the time since the last
 * activity is at most this. */
uint64_t poll_window_ns(struct poll_window *w, uint64_t now_ns);
/* The worker slept and woke up `block_ns` after its last activity. */
void poll_window_slept(struct poll_window *w, uint64_t block_ns);
/* Whether a contention sample is due at `now_ns`. */
bool poll_window_sample_due(const struct poll_window *w, uint64_t now_ns);
/* A sample: the thread's total run-queue wait `wait_ns` at `now_ns`.
 * Returns true when it found the host contended (the window is 0 now). */
bool poll_window_sample(struct poll_window *w, uint64_t now_ns, uint64_t wait_ns);
/* Whether the window is held at 0 for contention at `now_ns`. */
bool poll_window_contended(struct poll_window *w, uint64_t now_ns);

#endif

/* How long a queue worker busy-polls after its last activity before it
 * re-arms notifications and sleeps: a window that adapts to the traffic,
 * after QEMU's adjust_polling_time() (util/aio-posix.c).
 *
 * - Each sleep teaches the window: the time from the last activity to the
 *   wake-up (polling plus sleeping) is what a poll would have had to wait.
 *   Within the bound (poll_queue_timeout_us, at most POLL_WINDOW_MAX_NS):
 *   the window doubles, from POLL_WINDOW_START_NS, so the next gap like it
 *   is caught without a sleep and a wake-up. Longer than the bound: no window we may use would have
 *   caught it, and the window halves (to 0 below the start), so a queue
 *   that goes quiet stops spinning after every burst.
 * - Work found while polling teaches nothing: the window was right.
 * - The window never exceeds POLL_WINDOW_MAX_NS, nor the bound; a bound of
 *   0 never polls.
 *
 * Pure: times come from the caller (queue_worker_thread.c); a window
 * belongs to one worker thread. */
#ifndef UBIBLK_VHOST_POLL_WINDOW_H
#define UBIBLK_VHOST_POLL_WINDOW_H

#include <stdint.h>

/* The first window after none: a few µs catch a client that answers from a
 * spin of its own, and cost little when nothing comes. */
#define POLL_WINDOW_START_NS 4000ull
/* Never spin longer than a sleep and a wake-up cost: past that, sleeping
 * loses nothing and leaves the CPU to the client, the kernel's completion
 * work and, on a busy host, the vCPUs. 32 µs is QEMU's default
 * poll-max-ns; measured here against 16 µs and 1 ms, idle and beside a
 * CPU hog (docs/benchmarks.md, "Polling that adapts"). */
#define POLL_WINDOW_MAX_NS 32000ull

struct poll_window {
	uint64_t max_ns; /* the smaller of the bound and the cap */
	uint64_t ns;	 /* the current window */
};

/* bound_ns: poll_queue_timeout_us; cap_ns: 0 for POLL_WINDOW_MAX_NS. The
 * window never exceeds the smaller of the two. */
void poll_window_init(struct poll_window *w, uint64_t bound_ns, uint64_t cap_ns);
/* Keep polling while the time since the last activity is at most this. */
uint64_t poll_window_ns(const struct poll_window *w);
/* The worker slept and woke up `block_ns` after its last activity. */
void poll_window_slept(struct poll_window *w, uint64_t block_ns);

#endif

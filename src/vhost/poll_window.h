/* How long a queue worker busy-polls after its last activity before it
 * re-arms notifications and sleeps: a window that adapts to the traffic,
 * after QEMU's adjust_polling_time() (util/aio-posix.c), and is held to a
 * wake-up's cost when spinning cannot pay.
 *
 * - Each sleep teaches the window: the time from the last activity to the
 *   wake-up (polling plus sleeping) is what a poll would have had to wait.
 *   Within the bound (poll_queue_timeout_us): the window doubles, from
 *   POLL_WINDOW_START_NS, so the next gap like it is caught without a sleep
 *   and a wake-up. Longer than the bound: no window we may use would have
 *   caught it, and the window halves (to 0 below the start), so a queue
 *   that goes quiet stops spinning after every burst.
 * - Work found while polling teaches nothing: the window was right.
 * - The window never exceeds the bound; a bound of 0 never polls.
 * - The window used (poll_window_use) is at most the wake-up cost
 *   (POLL_WAKE_COST_NS) while the CPU is contended (the thread was
 *   preempted in the last POLL_CONTENDED_HOLD_NS): a spin then takes the
 *   CPU from the client, the kernel's completion work or, on a busy host,
 *   the vCPUs, and every µs of it delays them.
 * - While requests are in flight at the device (whose latency a spin does
 *   not shorten) the window used is 0 on an uncontended CPU: the wake-up
 *   after the completion is cheap there, and the CPU a spin would hold is
 *   the one the kernel's completion work needs. On a contended CPU a
 *   wake-up waits for the CPU too, so the spin up to the wake-up's cost
 *   (the rule above) pays.
 *
 * Pure: times and preemption counts come from the caller
 * (queue_worker_thread.c); a window belongs to one worker thread. */
#ifndef UBIBLK_VHOST_POLL_WINDOW_H
#define UBIBLK_VHOST_POLL_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

/* The first window after none: a few µs catch a client that answers from a
 * spin of its own, and cost little when nothing comes. */
#define POLL_WINDOW_START_NS 4000ull
/* About what a sleep and a wake-up cost on a virtual machine; QEMU's
 * default poll-max-ns. Measured against other rules, idle and beside a CPU
 * hog: docs/benchmarks.md, "Polling that adapts". */
#define POLL_WAKE_COST_NS 32000ull
/* How often the preemption count is looked at while polling, and how long
 * one preemption counts as contention. */
#define POLL_CONTENTION_CHECK_NS 1000000ull
#define POLL_CONTENDED_HOLD_NS	 10000000ull

struct poll_window {
	uint64_t max_ns;       /* the bound: poll_queue_timeout_us */
	uint64_t wake_cost_ns; /* POLL_WAKE_COST_NS unless a test says */
	uint64_t ns;	       /* the window learned */
	/* Contention: the preemption count last seen, when, and until when
	 * the CPU counts as contended. */
	uint64_t preemptions;
	uint64_t checked_ns;
	uint64_t contended_until_ns;
};

/* bound_ns: poll_queue_timeout_us; wake_cost_ns: 0 for POLL_WAKE_COST_NS
 * (tests that must see a long window open set more). now_ns and
 * preemptions start the contention check. */
void poll_window_init(struct poll_window *w, uint64_t bound_ns, uint64_t wake_cost_ns,
		      uint64_t now_ns, uint64_t preemptions);
/* The window learned (the adaptive rule alone). */
uint64_t poll_window_ns(const struct poll_window *w);
/* The window to use now: keep polling while the time since the last
 * activity is at most this. device_wait: requests are in flight at the
 * device. */
uint64_t poll_window_use(const struct poll_window *w, uint64_t now_ns, bool device_wait);
/* Whether the caller should read its preemption count (the thread's
 * involuntary context switches) and pass it to poll_window_preemptions:
 * once per POLL_CONTENTION_CHECK_NS. */
bool poll_window_check_due(const struct poll_window *w, uint64_t now_ns);
void poll_window_preemptions(struct poll_window *w, uint64_t now_ns, uint64_t preemptions);
/* The worker slept and woke up `block_ns` after its last activity. */
void poll_window_slept(struct poll_window *w, uint64_t block_ns);

#endif

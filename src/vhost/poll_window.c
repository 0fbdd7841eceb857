/* The adaptive busy-poll window (see poll_window.h for the rules). */
#include "vhost/poll_window.h"

void poll_window_init(struct poll_window *w, uint64_t bound_ns, uint64_t wake_cost_ns,
		      uint64_t now_ns, uint64_t preemptions)
{
	*w = (struct poll_window){
	    .max_ns = bound_ns,
	    .wake_cost_ns = wake_cost_ns ? wake_cost_ns : POLL_WAKE_COST_NS,
	    .preemptions = preemptions,
	    .checked_ns = now_ns,
	};
}

uint64_t poll_window_ns(const struct poll_window *w)
{
	return w->ns;
}

uint64_t poll_window_use(const struct poll_window *w, uint64_t now_ns, bool device_wait)
{
	bool contended = now_ns < w->contended_until_ns;
	/* A spin does not make the device faster. It only saves the wake-up
	 * that follows the completion, which is cheap on an idle CPU, so
	 * there the CPU goes to the kernel's completion work instead. */
	if (device_wait && !contended)
		return 0;
	if (contended && w->ns > w->wake_cost_ns)
		return w->wake_cost_ns;
	return w->ns;
}

bool poll_window_check_due(const struct poll_window *w, uint64_t now_ns)
{
	return now_ns - w->checked_ns >= POLL_CONTENTION_CHECK_NS;
}

void poll_window_preemptions(struct poll_window *w, uint64_t now_ns, uint64_t preemptions)
{
	if (preemptions != w->preemptions)
		w->contended_until_ns = now_ns + POLL_CONTENDED_HOLD_NS;
	w->preemptions = preemptions;
	w->checked_ns = now_ns;
}

void poll_window_slept(struct poll_window *w, uint64_t block_ns)
{
	if (w->max_ns == 0)
		return;
	if (block_ns <= w->ns)
		return; /* polling would have caught it: the window is right */
	if (block_ns > w->max_ns) {
		/* Halving rather than a reset: one late request does not undo
		 * what the steady traffic taught. */
		w->ns /= 2;
		if (w->ns < POLL_WINDOW_START_NS)
			w->ns = 0;
		return;
	}
	w->ns = w->ns ? w->ns * 2 : POLL_WINDOW_START_NS;
	if (w->ns > w->max_ns)
		w->ns = w->max_ns;
}

/* The adaptive busy-poll window (see poll_window.h for the rules). */
#include "vhost/poll_window.h"

void poll_window_init(struct poll_window *w, uint64_t bound_ns, uint64_t cap_ns)
{
	if (cap_ns == 0)
		cap_ns = POLL_WINDOW_MAX_NS;
	*w = (struct poll_window){.max_ns = bound_ns < cap_ns ? bound_ns : cap_ns};
}

uint64_t poll_window_ns(const struct poll_window *w)
{
	return w->ns;
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

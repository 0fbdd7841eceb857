/* The adaptive busy-poll window (see poll_window.h for the rules). */
#include "vhost/poll_window.h"

void poll_window_init(struct poll_window *w, uint64_t max_ns)
{
	*w = (struct poll_window){.max_ns = max_ns};
}

bool poll_window_contended(struct poll_window *w, uint64_t now_ns)
{
	if (!w->backing_off)
		return false;
	if (now_ns < w->backoff_end_ns)
		return true;
	/* The wait accumulated while sleeping through the back-off says
	 * little about spinning: measure afresh. */
	w->backing_off = false;
	w->sample_ns = 0;
	return false;
}

/* The bound in force: poll_queue_timeout_us, or no more than a sleep and
 * a wake-up cost while the host is busy. */
static uint64_t bound(const struct poll_window *w)
{
	if (w->backing_off && w->max_ns > POLL_WINDOW_CONTENDED_MAX_NS)
		return POLL_WINDOW_CONTENDED_MAX_NS;
	return w->max_ns;
}

uint64_t poll_window_ns(struct poll_window *w, uint64_t now_ns)
{
	poll_window_contended(w, now_ns); /* ends a back-off that is over */
	return w->ns;
}

void poll_window_slept(struct poll_window *w, uint64_t block_ns)
{
	uint64_t max = bound(w);
	if (max == 0)
		return;
	if (block_ns <= w->ns)
		return; /* polling would have caught it: the window is right */
	if (block_ns > max) {
		/* No window we may use would have caught it. Halving rather
		 * than a reset: one late request does not undo what the
		 * steady traffic taught. */
		w->ns /= 2;
		if (w->ns < POLL_WINDOW_START_NS)
			w->ns = 0;
		return;
	}
	w->ns = w->ns ? w->ns * 2 : POLL_WINDOW_START_NS;
	if (w->ns > max)
		w->ns = max;
}

bool poll_window_sample_due(const struct poll_window *w, uint64_t now_ns)
{
	return w->max_ns > 0 && !w->backing_off &&
	       (w->sample_ns == 0 || now_ns - w->sample_ns >= POLL_WINDOW_SAMPLE_NS);
}

bool poll_window_sample(struct poll_window *w, uint64_t now_ns, uint64_t wait_ns)
{
	/* The first sample, or a counter that went back (cannot happen for
	 * one thread, but then there is nothing to compare), only starts. */
	bool compare = w->sample_ns != 0 && wait_ns >= w->sample_wait_ns && now_ns > w->sample_ns;
	uint64_t wall = now_ns - w->sample_ns;
	uint64_t waited = wait_ns - w->sample_wait_ns;
	w->sample_ns = now_ns;
	w->sample_wait_ns = wait_ns;
	if (!compare || waited <= wall / POLL_WINDOW_CONTENDED_SHARE)
		return false;
	w->backing_off = true;
	w->backoff_end_ns = now_ns + POLL_WINDOW_BACKOFF_NS;
	if (w->ns > bound(w))
		w->ns = bound(w);
	w->backoffs++;
	return true;
}

/* Sleeping on a handful of eventfds: the one wait the fetch worker and the
 * archive tool's pipeline both do between rounds of work. */
#include "common.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

int eventfds_wait(const int *fds, size_t count, int timeout_ms, const char *who)
{
	struct pollfd pfds[EVENTFDS_WAIT_MAX];
	nfds_t n = 0;

	for (size_t i = 0; i < count && n < EVENTFDS_WAIT_MAX; i++) {
		if (fds[i] < 0)
			continue;
		pfds[n].fd = fds[i];
		pfds[n].events = POLLIN;
		pfds[n].revents = 0;
		n++;
	}
	int rc = poll(pfds, n, timeout_ms);
	if (rc < 0)
		return errno == EINTR ? 0 : -errno;
	/* Reading resets an eventfd; a counter that another thread bumps again
	 * right after simply wakes the next wait. */
	uint64_t value;
	for (nfds_t i = 0; i < n; i++)
		if ((pfds[i].revents & POLLIN) && read(pfds[i].fd, &value, sizeof(value)) < 0 &&
		    errno != EAGAIN)
			log_warn("%s: cannot read eventfd %d: %s", who, pfds[i].fd,
				 strerror(errno));
	return rc;
}

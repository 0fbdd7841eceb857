#include "lazy/channel_wakeup.h"

#include "common/common.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int gather(struct lazy_wakeup *w, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	w->members[w->member_count++] = fd;
	return 0;
}

int lazy_wakeup_init(struct lazy_wakeup *w, int base_fd, int image_fd)
{
	w->own_fd = -1;
	w->epoll_fd = -1;
	w->member_count = 0;
	w->notify_fd = base_fd;
	if (w->notify_fd < 0) {
		w->own_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (w->own_fd < 0)
			return -errno;
		w->notify_fd = w->own_fd;
	}
	if (image_fd < 0 || image_fd == w->notify_fd)
		return 0;
	int rc = 0;
	w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epoll_fd < 0)
		rc = -errno;
	if (rc == 0)
		rc = gather(w, w->notify_fd);
	if (rc == 0)
		rc = gather(w, image_fd);
	if (rc < 0)
		lazy_wakeup_fini(w);
	return rc;
}

void lazy_wakeup_fini(struct lazy_wakeup *w)
{
	if (w->epoll_fd >= 0)
		close(w->epoll_fd);
	if (w->own_fd >= 0)
		close(w->own_fd);
	w->epoll_fd = -1;
	w->own_fd = -1;
	w->notify_fd = -1;
	w->member_count = 0;
}

int lazy_wakeup_fd(const struct lazy_wakeup *w)
{
	return w->epoll_fd >= 0 ? w->epoll_fd : w->notify_fd;
}

void lazy_wakeup_drain(struct lazy_wakeup *w)
{
	for (int i = 0; i < w->member_count; i++) {
		uint64_t value;
		/* One read empties an eventfd; EAGAIN means it was empty. */
		if (read(w->members[i], &value, sizeof(value)) < 0 && errno != EAGAIN &&
		    errno != EINTR)
			log_debug("lazy: draining fd %d: %s", w->members[i], strerror(errno));
	}
}

/* The completion fd of a lazy channel. Three things can let a sleeping front
 * end make progress: the disk channel completing, the image channel
 * completing, and the fetch worker changing a stripe's state. The worker
 * writes to a "notify" eventfd: the disk channel's own completion eventfd
 * when it has one (an extra count on it is harmless), else one of ours.
 *
 * When that is the only fd, it is the completion fd and the caller drains it
 * as with any device. When the image channel has an fd of its own, both are
 * gathered in an epoll fd; epoll does not consume their counts, so the
 * channel drains them itself (lazy_wakeup_drain) when a poll found nothing,
 * before looking again. */
#ifndef UBIBLK_LAZY_CHANNEL_WAKEUP_H
#define UBIBLK_LAZY_CHANNEL_WAKEUP_H

#include <stdbool.h>

struct lazy_wakeup {
	int notify_fd;	/* the fd the worker writes to */
	int own_fd;	/* our eventfd, or -1 when notify_fd is the disk's */
	int epoll_fd;	/* -1 unless several fds are gathered */
	int members[2]; /* fds in the epoll set */
	int member_count;
};

/* base_fd / image_fd: the channels' completion fds (-1: none). */
int lazy_wakeup_init(struct lazy_wakeup *w, int base_fd, int image_fd);
void lazy_wakeup_fini(struct lazy_wakeup *w);
int lazy_wakeup_fd(const struct lazy_wakeup *w);
/* Whether the channel must drain the gathered fds itself. */
static inline bool lazy_wakeup_gathers(const struct lazy_wakeup *w)
{
	return w->epoll_fd >= 0;
}
/* Reads every gathered fd until it is empty; nonblocking. */
void lazy_wakeup_drain(struct lazy_wakeup *w);

#endif

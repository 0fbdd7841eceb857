/* Position inside a caller's iovec array, for continuing a short transfer.
 *
 * The caller's array is const and may be long, so the remainder is not
 * copied: when the transfer stopped inside an iovec, the next step transfers
 * only the rest of that iovec (`head`, held here); the step after it uses the
 * caller's array from the following iovec on. Short transfers are rare (EOF,
 * signals), so the extra step costs nothing on the normal path. */
#ifndef UBIBLK_BDEV_IOV_CURSOR_H
#define UBIBLK_BDEV_IOV_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct iov_cursor {
	const struct iovec *iov;
	int iovcnt;
	int index;	   /* first iovec not fully transferred */
	size_t skip;	   /* bytes of iov[index] already transferred */
	struct iovec head; /* iov[index] without its first `skip` bytes */
};

static inline void iov_cursor_init(struct iov_cursor *c, const struct iovec *iov, int iovcnt)
{
	c->iov = iov;
	c->iovcnt = iovcnt;
	c->index = 0;
	c->skip = 0;
}

/* Records `n` more bytes as transferred; true when nothing is left. */
bool iov_cursor_advance(struct iov_cursor *c, size_t n);

/* The iovecs of the next transfer step. Valid until the cursor changes. */
void iov_cursor_pending(struct iov_cursor *c, const struct iovec **iov, int *iovcnt);

#endif

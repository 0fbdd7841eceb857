#include "bdev/iov_cursor.h"

bool iov_cursor_advance(struct iov_cursor *c, size_t n)
{
	while (c->index < c->iovcnt) {
		size_t left = c->iov[c->index].iov_len - c->skip;
		if (n < left) {
			c->skip += n;
			break;
		}
		/* Also steps over empty iovecs, so `skip` never sits at an
		 * iovec's end and the next step never starts empty. */
		n -= left;
		c->index++;
		c->skip = 0;
	}
	return c->index >= c->iovcnt;
}

void iov_cursor_pending(struct iov_cursor *c, const struct iovec **iov, int *iovcnt)
{
	if (c->skip == 0) {
		*iov = c->iov + c->index;
		*iovcnt = c->iovcnt - c->index;
		return;
	}
	c->head.iov_base = (char *)c->iov[c->index].iov_base + c->skip;
	c->head.iov_len = c->iov[c->index].iov_len - c->skip;
	*iov = &c->head;
	*iovcnt = 1;
}

/* Small descriptor helpers. See common.h. */
#include <errno.h>
#include <fcntl.h>

#include "common/common.h"

int fd_set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

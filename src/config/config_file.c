#include "config_internal.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int config_read_file(const char *path, char **text, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = config_read_fd(fd, text, len);
	close(fd);
	return ret;
}

/* read() to EOF rather than fstat(): a KEK may come from a FIFO or stdin. */
int config_read_fd(int fd, char **text, size_t *len)
{
	size_t used = 0, cap = 4096;
	char *buf;
	int ret = 0;

	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (used + 1 >= cap) {
			if (cap >= CONFIG_FILE_MAX) {
				ret = -EFBIG;
				break;
			}
			/* Not realloc(): the old copy may hold secrets and must be wiped. */
			char *bigger = malloc(cap * 2);
			if (!bigger) {
				ret = -ENOMEM;
				break;
			}
			memcpy(bigger, buf, used);
			secret_wipe(buf, cap);
			free(buf);
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + used, cap - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (ret) {
		secret_wipe(buf, cap);
		free(buf);
		return ret;
	}
	buf[used] = '\0';
	*text = buf;
	*len = used;
	return 0;
}

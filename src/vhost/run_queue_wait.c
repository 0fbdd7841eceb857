/* Reads a thread's run-queue wait from /proc (see run_queue_wait.h). */
#include "vhost/run_queue_wait.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

int run_queue_wait_open(void)
{
	int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint64_t probe;
	int rc = run_queue_wait_read(fd, &probe);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int run_queue_wait_read(int fd, uint64_t *wait_ns)
{
	/* "<on-cpu ns> <run-queue wait ns> <timeslices>\n" */
	char buf[96];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	uint64_t on_cpu, wait;
	if (sscanf(buf, "%" SCNu64 " %" SCNu64, &on_cpu, &wait) != 2)
		return -EINVAL;
	*wait_ns = wait;
	return 0;
}

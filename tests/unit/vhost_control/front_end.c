#include "front_end.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define REPLY_TIMEOUT_MS 2000

void fe_send(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
	     const int *fds, unsigned int fd_count)
{
	struct vhost_user_header hdr = {.request = request, .flags = flags, .size = size};
	struct iovec iov[2] = {
	    {.iov_base = &hdr, .iov_len = sizeof(hdr)},
	    {.iov_base = (void *)payload, .iov_len = size},
	};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(64 * sizeof(int))];
	} control;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
	assert_true(fd_count <= 64);
	if (fd_count > 0) {
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(fd_count * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(fd_count * sizeof(int));
		memcpy(CMSG_DATA(c), fds, fd_count * sizeof(int));
	}
	ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	assert_int_equal(n, (ssize_t)(sizeof(hdr) + size));
}

void fe_request(int sock, uint32_t request, const void *payload, uint32_t size)
{
	fe_send(sock, request, VHOST_USER_VERSION, payload, size, NULL, 0);
}

void fe_request_u64(int sock, uint32_t request, uint64_t value)
{
	fe_request(sock, request, &value, sizeof(value));
}

void fe_request_state(int sock, uint32_t request, uint32_t index, uint32_t num)
{
	struct vhost_user_vring_state s = {.index = index, .num = num};
	fe_request(sock, request, &s, sizeof(s));
}

static void read_exact(int sock, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd pfd = {.fd = sock, .events = POLLIN};
		assert_int_equal(poll(&pfd, 1, REPLY_TIMEOUT_MS), 1);
		ssize_t n = recv(sock, (char *)buf + got, len - got, 0);
		assert_true(n > 0);
		got += (size_t)n;
	}
}

uint32_t fe_reply(int sock, uint32_t request, void *payload, uint32_t max)
{
	struct vhost_user_header hdr;
	read_exact(sock, &hdr, sizeof(hdr));
	assert_int_equal(hdr.request, request);
	assert_int_equal(hdr.flags, VHOST_USER_VERSION | VHOST_USER_REPLY_FLAG);
	assert_true(hdr.size <= max);
	read_exact(sock, payload, hdr.size);
	return hdr.size;
}

uint64_t fe_reply_u64(int sock, uint32_t request)
{
	uint64_t value = 0;
	assert_int_equal(fe_reply(sock, request, &value, sizeof(value)), sizeof(value));
	return value;
}

bool fe_nothing_pending(int sock)
{
	struct pollfd pfd = {.fd = sock, .events = POLLIN};
	return poll(&pfd, 1, 0) == 0;
}

int fe_open_fd_count(void)
{
	DIR *dir = opendir("/proc/self/fd");
	assert_non_null(dir);
	int count = 0;
	while (readdir(dir))
		count++;
	closedir(dir);
	return count;
}

int fe_memfd(size_t size, void **map)
{
	int fd = memfd_create("guest-ram", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (map) {
		*map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		assert_true(*map != MAP_FAILED);
	}
	return fd;
}

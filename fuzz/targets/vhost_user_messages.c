/*
 * A vhost-user front end's whole conversation: a sequence of control
 * messages, each written into a socketpair with the descriptors it carries
 * and handled by the real control plane (vhost_control_process_message():
 * header and size checks, the request handlers, the per-connection state
 * machine, memory tables, ring setup, start and stop) until one ends the
 * connection, as the server would. The queue workers are threadless
 * (vhost_control_create_threadless()): rings are really set up, mapped,
 * started and stopped, but no request on them is processed, so an input
 * always runs the same way.
 *
 * Input: one device byte, then records until the input ends:
 *   device: bits 0-1: queues - 1; bits 2-3: queue size 16 << n
 *   record: [fds][fd size][request u32][flags u32][size u32][payload]
 *     fds bits 0-3: how many descriptors ride along (see fd_counts);
 *         bits 4-5: their kind: 0-1 memfd, 2 eventfd, 3 the read end of a pipe
 *     fd size: a memfd's size in 4 KiB pages (size % 17: at most 64 KiB)
 *     payload: `size` bytes (header fields little endian, as on the wire).
 *         A payload the input cannot fill is sent as far as it goes and the
 *         front end then shuts its side down (a truncated message).
 * The descriptors are fresh for each message and the target's own copies
 * are closed once sent; what the server keeps it must close by the end of
 * the input: the number of open descriptors must be back where it was.
 *
 * Checked besides memory safety: every reply is a well-formed reply to the
 * request just sent, at most one per request, and a request that succeeded
 * and has its own reply got exactly one (GET_FEATURES and
 * GET_PROTOCOL_FEATURES with the offered bits, GET_CONFIG with the size
 * asked for); a request that ends the connection says why.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bdev/bdev.h"
#include "common/common.h"
#include "vhost/control.h"
#include "vhost/message_io.h"

#define MEMFD_PAGES  17u
#define DISK_SECTORS 16384u
/* Room for more descriptors than a message may carry (32). */
#define MAX_SEND_FDS 33u

/* Descriptor counts by the low 4 bits of a record's first byte. */
static const unsigned int fd_counts[16] = {0, 1, 1, 1, 1, 2, 2, 3, 4, 5, 8, 0, 1, 2, 32, 33};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Every refused request ends a connection with a warning. */
	setenv("UBIBLK_LOG", "error", 1);
	log_init();
	return 0;
}

static int open_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		abort();
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int make_fd(unsigned int kind, size_t bytes)
{
	if (kind == 2)
		return eventfd(0, EFD_CLOEXEC);
	if (kind == 3) {
		int p[2];
		if (pipe2(p, O_CLOEXEC) != 0)
			return -1;
		close(p[1]);
		return p[0];
	}
	int fd = memfd_create("fuzz-vhost", MFD_CLOEXEC);
	if (fd >= 0 && ftruncate(fd, (off_t)bytes) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends header and payload in one message, the descriptors alongside. */
static void send_message(int sock, const uint8_t *bytes, size_t len, const int *fds,
			 unsigned int fd_count)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(MAX_SEND_FDS * sizeof(int))];
	} control;
	struct iovec iov = {.iov_base = (void *)bytes, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd_count > 0) {
		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(fd_count * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(fd_count * sizeof(int));
		memcpy(CMSG_DATA(c), fds, fd_count * sizeof(int));
	}
	/* At most 12 + 4096 bytes into an empty socket: one call takes it all. */
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)len)
		abort();
}

static bool has_own_reply(uint32_t request)
{
	switch (request) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_SET_DEVICE_STATE_FD:
	case VHOST_USER_CHECK_DEVICE_STATE:
		return true;
	default:
		return false;
	}
}

/* Reads what the server replied to `sent` and checks it. */
static void check_replies(int sock, const struct vhost_user_header *sent, int ret)
{
	static uint8_t buf[2 * (sizeof(struct vhost_user_header) + VHOST_USER_MAX_PAYLOAD)];
	ssize_t n = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
	size_t len = n > 0 ? (size_t)n : 0;
	unsigned int replies = 0;
	size_t at = 0;
	while (at < len) {
		struct vhost_user_header h;
		if (len - at < sizeof(h))
			abort(); /* a torn reply */
		memcpy(&h, buf + at, sizeof(h));
		at += sizeof(h);
		if (h.request != sent->request ||
		    h.flags != (VHOST_USER_VERSION | VHOST_USER_REPLY_FLAG) ||
		    h.size > VHOST_USER_MAX_PAYLOAD || len - at < h.size)
			abort();
		uint64_t u64 = 0;
		if (h.size == sizeof(u64))
			memcpy(&u64, buf + at, sizeof(u64));
		if (h.request == VHOST_USER_GET_FEATURES && u64 != VHOST_BLK_FEATURES)
			abort();
		if (h.request == VHOST_USER_GET_PROTOCOL_FEATURES &&
		    u64 != VHOST_BLK_PROTOCOL_FEATURES)
			abort();
		if (h.request == VHOST_USER_GET_CONFIG && h.size != sent->size)
			abort();
		at += h.size;
		replies++;
	}
	if (replies > 1 || (ret == 0 && has_own_reply(sent->request) && replies != 1))
		abort();
}

/* Sends one record and lets the control plane handle it. Returns false when
 * the conversation is over (input used up, or the connection ended). */
static bool one_message(struct vhost_control *ctl, int front, int back, const uint8_t **data,
			size_t *size)
{
	if (*size <= 2)
		return false;
	uint8_t fd_spec = (*data)[0];
	size_t memfd_bytes = (size_t)((*data)[1] % MEMFD_PAGES) * 4096;
	const uint8_t *bytes = *data + 2;
	size_t avail = *size - 2;
	/* A header cut short is sent as it is, like a truncated payload. */
	struct vhost_user_header hdr = {0};
	memcpy(&hdr, bytes, avail < sizeof(hdr) ? avail : sizeof(hdr));
	/* A header announcing too much is refused before its payload is read. */
	size_t want = sizeof(hdr) + (hdr.size <= VHOST_USER_MAX_PAYLOAD ? hdr.size : 0);
	size_t len = want < avail ? want : avail;
	bool truncated = len < want;
	*data += 2 + len;
	*size -= 2 + len;

	unsigned int fd_count = fd_counts[fd_spec & 15];
	int fds[MAX_SEND_FDS];
	for (unsigned int i = 0; i < fd_count; i++) {
		fds[i] = make_fd((fd_spec >> 4) & 3, memfd_bytes);
		if (fds[i] < 0)
			abort();
	}
	send_message(front, bytes, len, fds, fd_count);
	for (unsigned int i = 0; i < fd_count; i++)
		close(fds[i]);
	if (truncated)
		shutdown(front, SHUT_WR);

	struct error err = {.text = ""};
	int ret = vhost_control_process_message(ctl, back, &err);
	if (ret < 0 && err.text[0] == '\0')
		abort(); /* every end of a connection says why */
	if (truncated && ret == 0)
		abort();
	check_replies(front, &hdr, ret);
	return ret == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int fds_before = open_fd_count();
	struct vhost_blk_options opts = {
	    .socket_path = "unused",
	    .num_queues = 1u + (data[0] & 3),
	    .queue_size = 16u << ((data[0] >> 2) & 3),
	    .seg_size_max = 65536,
	    .seg_count_max = 4,
	    .poll_queue_timeout_us = 0,
	    .device_id = "ubiblk-fuzz",
	};
	data++;
	size--;
	struct bdev *dev;
	if (bdev_open_null(DISK_SECTORS, &dev) != 0)
		abort();
	struct vhost_control *ctl;
	if (vhost_control_create_threadless(&opts, dev, &ctl) != 0)
		abort();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	/* The server's end is non-blocking, as accept4() makes it. */
	if (fcntl(sv[1], F_SETFL, O_NONBLOCK) != 0)
		abort();
	while (one_message(ctl, sv[0], sv[1], &data, &size))
		;
	close(sv[0]);
	close(sv[1]);
	vhost_control_destroy(ctl);
	bdev_close(dev);
	if (open_fd_count() != fds_before)
		abort(); /* a descriptor the server kept past its connection */
	return 0;
}

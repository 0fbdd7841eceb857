#include "vhost/message_io.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"

bool vhost_user_request_may_carry_fds(uint32_t request)
{
	switch (request) {
	case VHOST_USER_SET_MEM_TABLE:
	case VHOST_USER_SET_LOG_BASE:
	case VHOST_USER_SET_LOG_FD:
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
	case VHOST_USER_SET_BACKEND_REQ_FD:
	case VHOST_USER_SET_INFLIGHT_FD:
	case VHOST_USER_ADD_MEM_REG:
	/* QEMU before 7.0 sent the region's fd with REM_MEM_REG; the
	 * vhost-user spec lets a back end accept and close it. */
	case VHOST_USER_REM_MEM_REG:
	case VHOST_USER_SET_DEVICE_STATE_FD:
	case VHOST_USER_GPU_SET_SOCKET:
		return true;
	default:
		return false;
	}
}

int vhost_user_fixed_payload_size(uint32_t request)
{
	switch (request) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_SET_OWNER:
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_CHECK_DEVICE_STATE:
		return 0;
	case VHOST_USER_SET_FEATURES:
	case VHOST_USER_SET_PROTOCOL_FEATURES:
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		return (int)sizeof(uint64_t);
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_SET_VRING_ENABLE:
	case VHOST_USER_SET_DEVICE_STATE_FD: /* direction u32, phase u32 */
		return (int)sizeof(struct vhost_user_vring_state);
	case VHOST_USER_SET_VRING_ADDR:
		return (int)sizeof(struct vhost_user_vring_addr);
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_REM_MEM_REG:
		return (int)sizeof(struct vhost_user_single_mem_region);
	default:
		return -1;
	}
}

void vhost_user_message_close_fds(struct vhost_user_message *msg)
{
	for (unsigned int i = 0; i < msg->fd_count; i++) {
		if (msg->fds[i] >= 0)
			close(msg->fds[i]);
		msg->fds[i] = -1;
	}
	msg->fd_count = 0;
}

/* Waits until sock is ready for `events`; -ECANCELED if abort_fd is readable
 * first. */
static int wait_ready(int sock, short events, int abort_fd)
{
	struct pollfd pfd[2] = {
	    {.fd = sock, .events = events},
	    {.fd = abort_fd, .events = POLLIN},
	};
	nfds_t count = abort_fd >= 0 ? 2 : 1;
	for (;;) {
		if (poll(pfd, count, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (count == 2 && (pfd[1].revents & POLLIN))
			return -ECANCELED;
		if (pfd[0].revents)
			return 0;
	}
}

/* Keeps the descriptors of one recvmsg() in msg. Returns false when some had
 * to be dropped (more than VHOST_USER_MAX_FDS, or a truncated control
 * buffer); the kernel closes what did not fit, we close what we dropped. */
static bool collect_fds(struct msghdr *mh, struct vhost_user_message *msg)
{
	bool complete = !(mh->msg_flags & MSG_CTRUNC);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *data = CMSG_DATA(c);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, data + i * sizeof(int), sizeof(int));
			if (msg->fd_count < VHOST_USER_MAX_FDS) {
				msg->fds[msg->fd_count++] = fd;
			} else {
				close(fd);
				complete = false;
			}
		}
	}
	return complete;
}

/* Reads exactly len bytes (collecting descriptors). *got tells how many bytes
 * arrived before an error. */
static int receive_exact(int sock, int abort_fd, void *buf, size_t len,
			 struct vhost_user_message *msg, size_t *got, bool *fds_complete)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(VHOST_USER_MAX_FDS * sizeof(int))];
	} control;
	*got = 0;
	while (*got < len) {
		struct iovec iov = {.iov_base = (char *)buf + *got, .iov_len = len - *got};
		struct msghdr mh = {
		    .msg_iov = &iov,
		    .msg_iovlen = 1,
		    .msg_control = control.buf,
		    .msg_controllen = sizeof(control.buf),
		};
		ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int ret = wait_ready(sock, POLLIN, abort_fd);
				if (ret < 0)
					return ret;
				continue;
			}
			return -errno;
		}
		if (!collect_fds(&mh, msg))
			*fds_complete = false;
		if (n == 0)
			return -ECONNRESET;
		*got += (size_t)n;
	}
	return 0;
}

static int check_header(const struct vhost_user_header *hdr, struct error *err)
{
	const char *name = vhost_user_request_name(hdr->request);
	if ((hdr->flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION)
		return error_set(err, -EBADMSG, "%s (%u): unsupported version in flags 0x%x", name,
				 hdr->request, hdr->flags);
	if (hdr->flags & VHOST_USER_REPLY_FLAG)
		return error_set(err, -EBADMSG, "%s (%u): a request with the REPLY flag", name,
				 hdr->request);
	uint32_t known =
	    VHOST_USER_VERSION_MASK | VHOST_USER_REPLY_FLAG | VHOST_USER_NEED_REPLY_FLAG;
	if (hdr->flags & ~known)
		return error_set(err, -EBADMSG, "%s (%u): unknown flag bits 0x%x", name,
				 hdr->request, hdr->flags & ~known);
	if (hdr->size > VHOST_USER_MAX_PAYLOAD)
		return error_set(err, -EBADMSG, "%s (%u): payload size %u exceeds %u", name,
				 hdr->request, hdr->size, VHOST_USER_MAX_PAYLOAD);
	return 0;
}

static int check_fds_and_size(const struct vhost_user_message *msg, struct error *err)
{
	const char *name = vhost_user_request_name(msg->hdr.request);
	if (msg->fd_count > 0 && !vhost_user_request_may_carry_fds(msg->hdr.request))
		return error_set(err, -EBADMSG, "%s: %u unexpected file descriptor(s)", name,
				 msg->fd_count);
	int expected = vhost_user_fixed_payload_size(msg->hdr.request);
	if (expected >= 0 && msg->hdr.size != (uint32_t)expected)
		return error_set(err, -EBADMSG, "%s: payload size %u, expected %d", name,
				 msg->hdr.size, expected);
	return 0;
}

int vhost_user_receive(int sock, int abort_fd, struct vhost_user_message *msg, struct error *err)
{
	msg->fd_count = 0;
	bool fds_complete = true;
	size_t got;
	int ret =
	    receive_exact(sock, abort_fd, &msg->hdr, sizeof(msg->hdr), msg, &got, &fds_complete);
	if (ret == -ECONNRESET && got == 0)
		ret = error_set(err, -ECONNRESET, "front end disconnected");
	else if (ret == -ECONNRESET)
		ret = error_set(err, -ECONNRESET, "front end disconnected inside a header");
	else if (ret == -ECANCELED)
		ret = error_set(err, -ECANCELED, "stop requested");
	else if (ret < 0)
		ret = error_set(err, ret, "socket error: %s", strerror(-ret));
	else
		ret = check_header(&msg->hdr, err);

	if (ret == 0) {
		ret = receive_exact(sock, abort_fd, &msg->payload, msg->hdr.size, msg, &got,
				    &fds_complete);
		if (ret == -ECONNRESET)
			ret = error_set(
			    err, -ECONNRESET,
			    "front end disconnected inside %s (%zu of %u payload bytes)",
			    vhost_user_request_name(msg->hdr.request), got, msg->hdr.size);
		else if (ret == -ECANCELED)
			ret = error_set(err, -ECANCELED, "stop requested");
		else if (ret < 0)
			ret = error_set(err, ret, "socket error: %s", strerror(-ret));
	}
	if (ret == 0 && !fds_complete)
		ret = error_set(err, -EBADMSG, "%s: more than %u file descriptors",
				vhost_user_request_name(msg->hdr.request), VHOST_USER_MAX_FDS);
	if (ret == 0)
		ret = check_fds_and_size(msg, err);
	if (ret < 0)
		vhost_user_message_close_fds(msg);
	return ret;
}

int vhost_user_send_reply(int sock, int abort_fd, uint32_t request, const void *payload,
			  uint32_t size)
{
	struct vhost_user_header hdr = {
	    .request = request,
	    .flags = VHOST_USER_VERSION | VHOST_USER_REPLY_FLAG,
	    .size = size,
	};
	struct iovec iov[2] = {
	    {.iov_base = &hdr, .iov_len = sizeof(hdr)},
	    {.iov_base = (void *)payload, .iov_len = size},
	};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
	while (mh.msg_iovlen > 0) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int ret = wait_ready(sock, POLLOUT, abort_fd);
				if (ret < 0)
					return ret;
				continue;
			}
			return -errno;
		}
		/* Partial send: skip what went out and send the rest. */
		size_t sent = (size_t)n;
		while (mh.msg_iovlen > 0 && sent >= mh.msg_iov[0].iov_len) {
			sent -= mh.msg_iov[0].iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen > 0) {
			mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + sent;
			mh.msg_iov[0].iov_len -= sent;
		}
	}
	return 0;
}

int vhost_user_send_u64_reply(int sock, int abort_fd, uint32_t request, uint64_t value)
{
	return vhost_user_send_reply(sock, abort_fd, request, &value, sizeof(value));
}

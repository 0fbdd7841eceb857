#include "bench/vhost_user_client.h"

#include "common/common.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

struct message {
	struct vhost_user_header hdr;
	union {
		uint64_t u64;
		struct vhost_user_vring_state state;
		struct vhost_user_vring_addr addr;
		struct {
			uint32_t nregions;
			uint32_t padding;
			struct vhost_user_mem_region region;
		} __attribute__((packed)) mem;
		struct {
			struct vhost_user_config_header hdr;
			uint8_t data[256];
		} __attribute__((packed)) config;
	} payload;
} __attribute__((packed));

int vhost_user_client_connect(struct vhost_user_client *c, const char *path,
			      unsigned reply_timeout_ms)
{
	c->fd = -1;
	c->reply_ack = false;
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = {.tv_sec = reply_timeout_ms / 1000,
			     .tv_usec = (reply_timeout_ms % 1000) * 1000};
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	c->fd = fd;
	return 0;
}

void vhost_user_client_close(struct vhost_user_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static int send_message(struct vhost_user_client *c, struct message *msg, int fd)
{
	size_t len = sizeof(msg->hdr) + msg->hdr.size;
	struct iovec iov = {.iov_base = msg, .iov_len = len};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = sizeof(control.buf);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	ssize_t sent;
	do {
		sent = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
	} while (sent < 0 && errno == EINTR);
	if (sent < 0)
		return -errno;
	/* A Unix stream socket takes a message this small whole or not at all. */
	return (size_t)sent == len ? 0 : -EIO;
}

static int recv_exact(struct vhost_user_client *c, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(c->fd, (char *)buf + got, len - got, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		got += (size_t)n;
	}
	return 0;
}

/* Receive the reply to `request`, whose payload must be `min_size` to
 * `max_size` bytes; returns its payload size or a negative errno. */
static int recv_reply(struct vhost_user_client *c, uint32_t request, struct message *reply,
		      uint32_t min_size, uint32_t max_size)
{
	int rc = recv_exact(c, &reply->hdr, sizeof(reply->hdr));
	if (rc < 0)
		return rc;
	if (reply->hdr.request != request || !(reply->hdr.flags & VHOST_USER_REPLY_FLAG) ||
	    (reply->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ||
	    reply->hdr.size > sizeof(reply->payload)) {
		log_error("backend sent a malformed reply to %s (request %u, flags %#x, size %u)",
			  vhost_user_request_name(request), reply->hdr.request, reply->hdr.flags,
			  reply->hdr.size);
		return -EPROTO;
	}
	rc = recv_exact(c, &reply->payload, reply->hdr.size);
	if (rc < 0)
		return rc;
	if (reply->hdr.size < min_size || reply->hdr.size > max_size) {
		log_error("backend replied to %s with %u bytes, expected %u",
			  vhost_user_request_name(request), reply->hdr.size, min_size);
		return -EPROTO;
	}
	return (int)reply->hdr.size;
}

/* Send a request that has no reply of its own; wait for the acknowledgement
 * when REPLY_ACK is on. */
static int send_acked(struct vhost_user_client *c, struct message *msg, int fd)
{
	msg->hdr.flags = VHOST_USER_VERSION | (c->reply_ack ? VHOST_USER_NEED_REPLY_FLAG : 0);
	int rc = send_message(c, msg, fd);
	if (rc < 0 || !c->reply_ack)
		return rc;
	struct message reply;
	rc = recv_reply(c, msg->hdr.request, &reply, sizeof(uint64_t), sizeof(uint64_t));
	if (rc < 0)
		return rc;
	return reply.payload.u64 == 0 ? 0 : -EREMOTEIO;
}

int vhost_user_client_request(struct vhost_user_client *c, enum vhost_user_request request)
{
	struct message msg = {.hdr = {.request = request, .size = 0}};
	return send_acked(c, &msg, -1);
}

int vhost_user_client_get_u64(struct vhost_user_client *c, enum vhost_user_request request,
			      uint64_t *value)
{
	struct message msg = {.hdr = {.request = request, .flags = VHOST_USER_VERSION}};
	int rc = send_message(c, &msg, -1);
	if (rc < 0)
		return rc;
	rc = recv_reply(c, request, &msg, sizeof(uint64_t), sizeof(uint64_t));
	if (rc < 0)
		return rc;
	*value = msg.payload.u64;
	return 0;
}

int vhost_user_client_set_u64(struct vhost_user_client *c, enum vhost_user_request request,
			      uint64_t value)
{
	struct message msg = {.hdr = {.request = request, .size = sizeof(uint64_t)}};
	msg.payload.u64 = value;
	return send_acked(c, &msg, -1);
}

int vhost_user_client_set_vring_state(struct vhost_user_client *c, enum vhost_user_request request,
				      uint32_t index, uint32_t num)
{
	struct message msg = {.hdr = {.request = request, .size = sizeof(msg.payload.state)}};
	msg.payload.state.index = index;
	msg.payload.state.num = num;
	return send_acked(c, &msg, -1);
}

int vhost_user_client_get_vring_base(struct vhost_user_client *c, uint32_t index, uint32_t *num)
{
	struct message msg = {.hdr = {.request = VHOST_USER_GET_VRING_BASE,
				      .flags = VHOST_USER_VERSION,
				      .size = sizeof(msg.payload.state)}};
	msg.payload.state.index = index;
	msg.payload.state.num = 0;
	int rc = send_message(c, &msg, -1);
	if (rc < 0)
		return rc;
	rc = recv_reply(c, VHOST_USER_GET_VRING_BASE, &msg, sizeof(msg.payload.state),
			sizeof(msg.payload.state));
	if (rc < 0)
		return rc;
	*num = msg.payload.state.num;
	return 0;
}

int vhost_user_client_set_vring_addr(struct vhost_user_client *c,
				     const struct vhost_user_vring_addr *addr)
{
	struct message msg = {
	    .hdr = {.request = VHOST_USER_SET_VRING_ADDR, .size = sizeof(msg.payload.addr)}};
	msg.payload.addr = *addr;
	return send_acked(c, &msg, -1);
}

int vhost_user_client_set_vring_fd(struct vhost_user_client *c, enum vhost_user_request request,
				   uint32_t index, int fd)
{
	struct message msg = {.hdr = {.request = request, .size = sizeof(uint64_t)}};
	msg.payload.u64 = index & VHOST_USER_VRING_IDX_MASK;
	return send_acked(c, &msg, fd);
}

int vhost_user_client_set_mem_table(struct vhost_user_client *c,
				    const struct vhost_user_mem_region *region, int fd)
{
	struct message msg = {
	    .hdr = {.request = VHOST_USER_SET_MEM_TABLE, .size = sizeof(msg.payload.mem)}};
	msg.payload.mem.nregions = 1;
	msg.payload.mem.padding = 0;
	msg.payload.mem.region = *region;
	return send_acked(c, &msg, fd);
}

int vhost_user_client_get_config(struct vhost_user_client *c, void *config, uint32_t size)
{
	struct message msg = {.hdr = {.request = VHOST_USER_GET_CONFIG,
				      .flags = VHOST_USER_VERSION,
				      .size = (uint32_t)sizeof(msg.payload.config.hdr) + size}};
	if (size > sizeof(msg.payload.config.data))
		return -EINVAL;
	msg.payload.config.hdr.offset = 0;
	msg.payload.config.hdr.size = size;
	msg.payload.config.hdr.flags = 0;
	int rc = send_message(c, &msg, -1);
	if (rc < 0)
		return rc;
	uint32_t full = (uint32_t)sizeof(msg.payload.config.hdr) + size;
	rc = recv_reply(c, VHOST_USER_GET_CONFIG, &msg, 0, full);
	if (rc < 0)
		return rc;
	/* vhost-user reports a failed GET_CONFIG as a reply without the data. */
	if ((uint32_t)rc != full || msg.payload.config.hdr.size != size)
		return -EREMOTEIO;
	memcpy(config, msg.payload.config.data, size);
	return 0;
}

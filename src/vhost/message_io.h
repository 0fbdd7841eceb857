/* Reading and writing vhost-user messages on a connected Unix stream socket.
 *
 * Everything a front end sends is checked here before any handler sees it:
 * the header (version 1, no REPLY flag, no unknown flag bits, size at most
 * 4096), the file descriptors (only on requests that may carry them, at most
 * 32) and, for fixed-size requests, the exact payload size. The socket is
 * non-blocking; every wait also watches `abort_fd` (the server's stop
 * eventfd) so a stalled peer can never keep the process from stopping. */
#ifndef UBIBLK_VHOST_MESSAGE_IO_H
#define UBIBLK_VHOST_MESSAGE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "vhost/vhost_user_wire.h"

/* GET_CONFIG / SET_CONFIG: the config header and up to the rest of a payload. */
struct vhost_user_config_payload {
	struct vhost_user_config_header hdr;
	uint8_t data[VHOST_USER_MAX_PAYLOAD - sizeof(struct vhost_user_config_header)];
} __attribute__((packed));

union vhost_user_payload {
	uint64_t u64;
	struct vhost_user_vring_state state;
	struct vhost_user_vring_addr addr;
	struct vhost_user_mem_table mem_table;
	struct vhost_user_single_mem_region mem_region;
	struct vhost_user_config_payload config;
	uint8_t bytes[VHOST_USER_MAX_PAYLOAD];
};

struct vhost_user_message {
	struct vhost_user_header hdr;
	union vhost_user_payload payload;
	/* Received descriptors; a handler that keeps one sets its slot to -1. */
	int fds[VHOST_USER_MAX_FDS];
	unsigned int fd_count;
};

/* Reads one complete message into msg. Returns 0, or:
 *   -ECONNRESET  the peer closed the connection (before or inside a message)
 *   -EBADMSG     a malformed message (err says why)
 *   -ECANCELED   abort_fd became readable while waiting
 *   other        a socket error.
 * err always receives one line on failure. No descriptor stays open on
 * failure. */
int vhost_user_receive(int sock, int abort_fd, struct vhost_user_message *msg, struct error *err);

/* Sends a reply: header {request, version 1 | REPLY, size} then the payload,
 * no descriptors. Returns 0 or a negative errno. */
int vhost_user_send_reply(int sock, int abort_fd, uint32_t request, const void *payload,
			  uint32_t size);
int vhost_user_send_u64_reply(int sock, int abort_fd, uint32_t request, uint64_t value);

/* Closes every descriptor still held by msg. */
void vhost_user_message_close_fds(struct vhost_user_message *msg);

/* Whether `request` may arrive with descriptors at all. */
bool vhost_user_request_may_carry_fds(uint32_t request);
/* The exact payload size of a fixed-size request, or -1 when the size is
 * variable (checked by its handler) or the request is unknown. */
int vhost_user_fixed_payload_size(uint32_t request);

#endif

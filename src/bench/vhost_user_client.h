/* The front-end (driver) side of the vhost-user control channel: one Unix
 * socket to the backend, requests with optional file descriptors, and their
 * replies. With REPLY_ACK negotiated every request that has no reply of its
 * own asks for an acknowledgement, so a rejected request is reported at the
 * message that caused it. Every wait for a reply is bounded by a timeout. */
#ifndef UBIBLK_BENCH_VHOST_USER_CLIENT_H
#define UBIBLK_BENCH_VHOST_USER_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "vhost/vhost_user_wire.h"

struct vhost_user_client {
	int fd;
	bool reply_ack;
};

/* Connect to the backend listening at `path`; replies wait at most
 * `reply_timeout_ms`. */
int vhost_user_client_connect(struct vhost_user_client *c, const char *path,
			      unsigned reply_timeout_ms);
void vhost_user_client_close(struct vhost_user_client *c);

/* A request with no payload and no reply of its own (SET_OWNER). */
int vhost_user_client_request(struct vhost_user_client *c, enum vhost_user_request request);
/* GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM. */
int vhost_user_client_get_u64(struct vhost_user_client *c, enum vhost_user_request request,
			      uint64_t *value);
/* SET_FEATURES, SET_PROTOCOL_FEATURES. */
int vhost_user_client_set_u64(struct vhost_user_client *c, enum vhost_user_request request,
			      uint64_t value);
/* SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE. */
int vhost_user_client_set_vring_state(struct vhost_user_client *c, enum vhost_user_request request,
				      uint32_t index, uint32_t num);
int vhost_user_client_get_vring_base(struct vhost_user_client *c, uint32_t index, uint32_t *num);
int vhost_user_client_set_vring_addr(struct vhost_user_client *c,
				     const struct vhost_user_vring_addr *addr);
/* SET_VRING_KICK, SET_VRING_CALL with an eventfd. */
int vhost_user_client_set_vring_fd(struct vhost_user_client *c, enum vhost_user_request request,
				   uint32_t index, int fd);
/* SET_MEM_TABLE with a single region backed by `fd`. */
int vhost_user_client_set_mem_table(struct vhost_user_client *c,
				    const struct vhost_user_mem_region *region, int fd);
/* GET_CONFIG of `size` bytes at offset 0 into `config`. */
int vhost_user_client_get_config(struct vhost_user_client *c, void *config, uint32_t size);

#endif

/* A vhost-user-blk device as the front end sees it: feature negotiation,
 * the shared memory (one memfd region holding every ring and buffer), and
 * starting and stopping virtqueues. Errors are logged here, naming the
 * request the backend refused. */
#ifndef UBIBLK_BENCH_FRONTEND_H
#define UBIBLK_BENCH_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/driver_ring.h"
#include "bench/vhost_user_client.h"

struct bench_frontend {
	struct vhost_user_client client;
	uint64_t features;	    /* virtio features acknowledged with SET_FEATURES */
	uint64_t protocol_features; /* vhost-user protocol features acknowledged */
	uint64_t capacity_bytes;    /* 0 when the backend has no CONFIG support */
	uint32_t device_queues;
	int memfd;
	void *mem;
	size_t mem_len;
};

static inline bool frontend_has_feature(const struct bench_frontend *fe, unsigned bit)
{
	return (fe->features >> bit) & 1u;
}

/* Connect and negotiate: features, owner, protocol features, queue count
 * and the config space. `optional_features` (EVENT_IDX, INDIRECT_DESC) are
 * acknowledged if the backend offers them, on top of VERSION_1, FLUSH, MQ
 * and PROTOCOL_FEATURES. */
int frontend_connect(struct bench_frontend *fe, const char *socket_path,
		     uint64_t optional_features);

/* Create `len` bytes of shared memory and hand it to the backend. */
int frontend_share_memory(struct bench_frontend *fe, size_t len);

/* The address the device uses for `p`, a pointer into the shared memory. */
static inline uint64_t frontend_device_address(const struct bench_frontend *fe, const void *p)
{
	return (uint64_t)((const char *)p - (const char *)fe->mem);
}

/* Hand the backend virtqueue `index` and start it. */
int frontend_start_queue(struct bench_frontend *fe, uint32_t index, const struct driver_ring *ring,
			 int kick_fd, int call_fd);

/* Stop virtqueue `index` (GET_VRING_BASE); *base is where the device stopped. */
int frontend_stop_queue(struct bench_frontend *fe, uint32_t index, uint32_t *base);

/* A round trip proving the backend accepted everything sent so far, for
 * backends without REPLY_ACK (they close the connection on a bad request). */
int frontend_sync(struct bench_frontend *fe);

void frontend_close(struct bench_frontend *fe);

#endif

#include "bench/frontend.h"

#include "common/common.h"

#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REPLY_TIMEOUT_MS 10000u

static int refused(enum vhost_user_request request, int rc, const char *detail)
{
	if (rc == -EREMOTEIO)
		log_error("backend refused %s%s", vhost_user_request_name(request), detail);
	else if (rc == -ECONNRESET || rc == -EPIPE)
		log_error("backend closed the connection at %s%s", vhost_user_request_name(request),
			  detail);
	else if (rc != -EPROTO)
		log_error("%s%s: %s", vhost_user_request_name(request), detail, strerror(-rc));
	return rc;
}

static int negotiate_protocol(struct bench_frontend *fe)
{
	uint64_t offered;
	int rc = vhost_user_client_get_u64(&fe->client, VHOST_USER_GET_PROTOCOL_FEATURES, &offered);
	if (rc < 0)
		return refused(VHOST_USER_GET_PROTOCOL_FEATURES, rc, "");
	uint64_t wanted = VHOST_FEATURE(VHOST_USER_PROTOCOL_F_MQ) |
			  VHOST_FEATURE(VHOST_USER_PROTOCOL_F_CONFIG) |
			  VHOST_FEATURE(VHOST_USER_PROTOCOL_F_REPLY_ACK);
	fe->protocol_features = offered & wanted;
	rc = vhost_user_client_set_u64(&fe->client, VHOST_USER_SET_PROTOCOL_FEATURES,
				       fe->protocol_features);
	if (rc < 0)
		return refused(VHOST_USER_SET_PROTOCOL_FEATURES, rc, "");
	fe->client.reply_ack = (fe->protocol_features >> VHOST_USER_PROTOCOL_F_REPLY_ACK) & 1u;
	return 0;
}

static int negotiate_features(struct bench_frontend *fe, uint64_t optional_features)
{
	uint64_t offered;
	int rc = vhost_user_client_get_u64(&fe->client, VHOST_USER_GET_FEATURES, &offered);
	if (rc < 0)
		return refused(VHOST_USER_GET_FEATURES, rc, "");
	if (!(offered & VHOST_FEATURE(VIRTIO_F_VERSION_1))) {
		log_error("backend does not offer VIRTIO_F_VERSION_1 (features %#llx)",
			  (unsigned long long)offered);
		return -EPROTO;
	}
	rc = vhost_user_client_request(&fe->client, VHOST_USER_SET_OWNER);
	if (rc < 0)
		return refused(VHOST_USER_SET_OWNER, rc, "");
	if (offered & VHOST_FEATURE(VHOST_USER_F_PROTOCOL_FEATURES)) {
		rc = negotiate_protocol(fe);
		if (rc < 0)
			return rc;
	}
	uint64_t wanted = VHOST_FEATURE(VIRTIO_F_VERSION_1) | VHOST_FEATURE(VIRTIO_BLK_F_FLUSH) |
			  VHOST_FEATURE(VIRTIO_BLK_F_MQ) |
			  VHOST_FEATURE(VHOST_USER_F_PROTOCOL_FEATURES) | optional_features;
	fe->features = offered & wanted;
	rc = vhost_user_client_set_u64(&fe->client, VHOST_USER_SET_FEATURES, fe->features);
	if (rc < 0)
		return refused(VHOST_USER_SET_FEATURES, rc, "");
	return 0;
}

static int read_geometry(struct bench_frontend *fe)
{
	fe->device_queues = 1;
	if (fe->protocol_features & VHOST_FEATURE(VHOST_USER_PROTOCOL_F_MQ)) {
		uint64_t n;
		int rc = vhost_user_client_get_u64(&fe->client, VHOST_USER_GET_QUEUE_NUM, &n);
		if (rc < 0)
			return refused(VHOST_USER_GET_QUEUE_NUM, rc, "");
		fe->device_queues = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	}
	if (!(fe->protocol_features & VHOST_FEATURE(VHOST_USER_PROTOCOL_F_CONFIG)))
		return 0;
	struct virtio_blk_config_space config;
	int rc = vhost_user_client_get_config(&fe->client, &config, sizeof(config));
	if (rc < 0)
		return refused(VHOST_USER_GET_CONFIG, rc, " (60 bytes)");
	if (config.capacity > UINT64_MAX / SECTOR_SIZE) {
		log_error("backend reports an impossible capacity of %llu sectors",
			  (unsigned long long)config.capacity);
		return -EPROTO;
	}
	fe->capacity_bytes = config.capacity * SECTOR_SIZE;
	/* num_queues is only meaningful with VIRTIO_BLK_F_MQ. */
	if (frontend_has_feature(fe, VIRTIO_BLK_F_MQ) && config.num_queues > 0 &&
	    config.num_queues < fe->device_queues)
		fe->device_queues = config.num_queues;
	return 0;
}

int frontend_connect(struct bench_frontend *fe, const char *socket_path, uint64_t optional_features)
{
	memset(fe, 0, sizeof(*fe));
	fe->memfd = -1;
	int rc = vhost_user_client_connect(&fe->client, socket_path, REPLY_TIMEOUT_MS);
	if (rc < 0) {
		log_error("cannot connect to %s: %s", socket_path, strerror(-rc));
		return rc;
	}
	rc = negotiate_features(fe, optional_features);
	if (rc == 0)
		rc = read_geometry(fe);
	if (rc < 0)
		frontend_close(fe);
	return rc;
}

int frontend_share_memory(struct bench_frontend *fe, size_t len)
{
	fe->memfd = memfd_create("ubiblk-bench", MFD_CLOEXEC);
	if (fe->memfd < 0)
		return -errno;
	if (ftruncate(fe->memfd, (off_t)len) < 0)
		return -errno;
	void *mem =
	    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fe->memfd, 0);
	if (mem == MAP_FAILED) {
		int rc = -errno;
		log_error("cannot map %zu bytes of shared memory: %s", len, strerror(-rc));
		return rc;
	}
	fe->mem = mem;
	fe->mem_len = len;
	struct vhost_user_mem_region region = {
	    .guest_phys_addr = 0,
	    .memory_size = len,
	    .userspace_addr = (uint64_t)(uintptr_t)mem,
	    .mmap_offset = 0,
	};
	int rc = vhost_user_client_set_mem_table(&fe->client, &region, fe->memfd);
	if (rc < 0)
		return refused(VHOST_USER_SET_MEM_TABLE, rc, "");
	return 0;
}

int frontend_start_queue(struct bench_frontend *fe, uint32_t index, const struct driver_ring *ring,
			 int kick_fd, int call_fd)
{
	char detail[128];
	snprintf(detail, sizeof(detail), " for queue %u", index);
	struct vhost_user_client *c = &fe->client;
	int rc = vhost_user_client_set_vring_state(c, VHOST_USER_SET_VRING_NUM, index, ring->size);
	if (rc < 0) {
		snprintf(detail, sizeof(detail),
			 " (size %u) for queue %u: its queue size may be smaller; lower --iodepth "
			 "or use --indirect",
			 ring->size, index);
		return refused(VHOST_USER_SET_VRING_NUM, rc, detail);
	}
	rc = vhost_user_client_set_vring_state(c, VHOST_USER_SET_VRING_BASE, index, 0);
	if (rc < 0)
		return refused(VHOST_USER_SET_VRING_BASE, rc, detail);
	struct vhost_user_vring_addr addr = {
	    .index = index,
	    .flags = 0,
	    .desc_user_addr = (uint64_t)(uintptr_t)ring->desc,
	    .used_user_addr = (uint64_t)(uintptr_t)ring->used,
	    .avail_user_addr = (uint64_t)(uintptr_t)ring->avail,
	    .log_guest_addr = 0,
	};
	rc = vhost_user_client_set_vring_addr(c, &addr);
	if (rc < 0)
		return refused(VHOST_USER_SET_VRING_ADDR, rc, detail);
	rc = vhost_user_client_set_vring_fd(c, VHOST_USER_SET_VRING_CALL, index, call_fd);
	if (rc < 0)
		return refused(VHOST_USER_SET_VRING_CALL, rc, detail);
	rc = vhost_user_client_set_vring_fd(c, VHOST_USER_SET_VRING_KICK, index, kick_fd);
	if (rc < 0)
		return refused(VHOST_USER_SET_VRING_KICK, rc, detail);
	if (frontend_has_feature(fe, VHOST_USER_F_PROTOCOL_FEATURES)) {
		rc = vhost_user_client_set_vring_state(c, VHOST_USER_SET_VRING_ENABLE, index, 1);
		if (rc < 0)
			return refused(VHOST_USER_SET_VRING_ENABLE, rc, detail);
	}
	return 0;
}

int frontend_stop_queue(struct bench_frontend *fe, uint32_t index, uint32_t *base)
{
	int rc = vhost_user_client_get_vring_base(&fe->client, index, base);
	if (rc < 0) {
		char detail[32];
		snprintf(detail, sizeof(detail), " for queue %u", index);
		return refused(VHOST_USER_GET_VRING_BASE, rc, detail);
	}
	return 0;
}

int frontend_sync(struct bench_frontend *fe)
{
	uint64_t features;
	int rc = vhost_user_client_get_u64(&fe->client, VHOST_USER_GET_FEATURES, &features);
	if (rc < 0) {
		log_error("backend stopped answering after setup (it rejected a request; see its "
			  "log): %s",
			  strerror(-rc));
		return rc;
	}
	return 0;
}

void frontend_close(struct bench_frontend *fe)
{
	vhost_user_client_close(&fe->client);
	if (fe->mem)
		munmap(fe->mem, fe->mem_len);
	if (fe->memfd >= 0)
		close(fe->memfd);
	fe->mem = NULL;
	fe->memfd = -1;
}

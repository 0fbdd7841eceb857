/* vhost-user-blk server: serves one block device to one vhost-user front end
 * (QEMU, cloud-hypervisor, ubiblk-bench) at a time over a Unix socket, and
 * listens again after it disconnects. One control thread handles vhost-user
 * messages; one worker thread per virtqueue does the I/O on its own bdev
 * channel. See docs/ARCHITECTURE.md and docs/vhost-user.md. */
#ifndef UBIBLK_VHOST_H
#define UBIBLK_VHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_blk.h>

#include "bdev/bdev.h"
#include "vhost/vhost_user_wire.h"

/* Feature bits offered by the device: the virtio-blk limits and geometry it
 * fills in the config space, a write cache the guest flushes, several
 * queues, DISCARD and WRITE_ZEROES; indirect descriptors and EVENT_IDX on
 * the rings; virtio 1.0; and vhost-user protocol features. */
#define VHOST_BLK_FEATURES                                                                         \
	(VHOST_FEATURE(VIRTIO_BLK_F_SIZE_MAX) | VHOST_FEATURE(VIRTIO_BLK_F_SEG_MAX) |              \
	 VHOST_FEATURE(VIRTIO_BLK_F_BLK_SIZE) | VHOST_FEATURE(VIRTIO_BLK_F_FLUSH) |                \
	 VHOST_FEATURE(VIRTIO_BLK_F_TOPOLOGY) | VHOST_FEATURE(VIRTIO_BLK_F_CONFIG_WCE) |           \
	 VHOST_FEATURE(VIRTIO_BLK_F_MQ) | VHOST_FEATURE(VIRTIO_BLK_F_DISCARD) |                    \
	 VHOST_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES) | VHOST_FEATURE(VIRTIO_RING_F_INDIRECT_DESC) |   \
	 VHOST_FEATURE(VIRTIO_RING_F_EVENT_IDX) | VHOST_FEATURE(VHOST_USER_F_PROTOCOL_FEATURES) |  \
	 VHOST_FEATURE(VIRTIO_F_VERSION_1))
/* Protocol features: several queues, acknowledged requests, the config
 * space, and adding and removing memory regions one at a time. */
#define VHOST_BLK_PROTOCOL_FEATURES                                                                \
	(VHOST_FEATURE(VHOST_USER_PROTOCOL_F_MQ) |                                                 \
	 VHOST_FEATURE(VHOST_USER_PROTOCOL_F_REPLY_ACK) |                                          \
	 VHOST_FEATURE(VHOST_USER_PROTOCOL_F_CONFIG) |                                             \
	 VHOST_FEATURE(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))
/* Pinned: what the device offers decides what every front end negotiates,
 * so a change here must be deliberate. */
_Static_assert(VHOST_BLK_FEATURES == 0x170007E46ull, "offered virtio features changed");
_Static_assert(VHOST_BLK_PROTOCOL_FEATURES == 0x8209ull, "offered protocol features changed");

/* Limits advertised for DISCARD / WRITE_ZEROES in the config space. */
#define VHOST_BLK_MAX_DISCARD_SECTORS 0x3fffffu
#define VHOST_BLK_MAX_DISCARD_SEG     1u

struct io_tracker;

struct vhost_blk_options {
	const char *socket_path;
	uint32_t num_queues;
	uint32_t queue_size; /* power of two */
	uint32_t seg_size_max;
	uint32_t seg_count_max;
	uint64_t poll_queue_timeout_us;
	bool write_through;
	char device_id[VIRTIO_BLK_ID_BYTES + 1]; /* NUL-terminated */
	const uint32_t *cpus;			 /* NULL or num_queues entries */
	/* NULL or num_queues I/O trackers (io_tracker/io_tracker.h) that outlive the server;
	 * queue i records its requests in trackers[i]. */
	struct io_tracker *const *trackers;
	/* NULL, or called once on the serving thread as soon as the socket
	 * accepts connections (before the first accept): a service manager
	 * may be told the device is ready. */
	void (*ready)(void *arg);
	void *ready_arg;
};

/* Serve until vhost_blk_request_stop() is called: then in-flight requests are
 * finished, the connection and the listening socket are closed, the socket
 * file is removed and the call returns 0. Returns a negative errno (after
 * logging why) when the socket or the queue workers cannot be created.
 * Front-end misbehaviour only ends that connection. Binds the socket before
 * starting any thread (the umask is changed while binding). */
int vhost_blk_serve(const struct vhost_blk_options *opts, struct bdev *dev);

/* Async-signal-safe: ask vhost_blk_serve() to stop. A request made before
 * vhost_blk_serve() runs is honoured too; once made, it stays made. */
void vhost_blk_request_stop(void);

#endif

/* vhost-user wire format (the parts a vhost-user-blk device and its front
 * end exchange): request numbers and their names, header flags, feature bits
 * and message layouts. Host byte order, packed. The one definition shared by
 * the server in this folder and by the ubiblk-bench front end, which links
 * only the small vhost_user_wire library, not the server. See
 * docs/vhost-user.md.
 *
 * Virtio's own feature bits come from the kernel's uapi headers included
 * here (VIRTIO_F_* in virtio_config.h, VIRTIO_RING_F_* in virtio_ring.h,
 * VIRTIO_BLK_F_* in virtio_blk.h); the vhost-user ones are defined below. */
#ifndef UBIBLK_VHOST_USER_WIRE_H
#define UBIBLK_VHOST_USER_WIRE_H

#include <stdint.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

enum vhost_user_request {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_SEND_RARP = 19,
	VHOST_USER_NET_SET_MTU = 20,
	VHOST_USER_SET_BACKEND_REQ_FD = 21,
	VHOST_USER_IOTLB_MSG = 22,
	VHOST_USER_SET_VRING_ENDIAN = 23,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_CREATE_CRYPTO_SESSION = 26,
	VHOST_USER_CLOSE_CRYPTO_SESSION = 27,
	VHOST_USER_POSTCOPY_ADVISE = 28,
	VHOST_USER_POSTCOPY_LISTEN = 29,
	VHOST_USER_POSTCOPY_END = 30,
	VHOST_USER_GET_INFLIGHT_FD = 31,
	VHOST_USER_SET_INFLIGHT_FD = 32,
	VHOST_USER_GPU_SET_SOCKET = 33,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_VRING_KICK = 35,
	VHOST_USER_GET_MAX_MEM_SLOTS = 36,
	VHOST_USER_ADD_MEM_REG = 37,
	VHOST_USER_REM_MEM_REG = 38,
	VHOST_USER_SET_STATUS = 39,
	VHOST_USER_GET_STATUS = 40,
	VHOST_USER_GET_SHARED_OBJECT = 41,
	VHOST_USER_SET_DEVICE_STATE_FD = 42,
	VHOST_USER_CHECK_DEVICE_STATE = 43,
};

/* "SET_MEM_TABLE" etc.; "UNKNOWN" for codes outside the enum. */
const char *vhost_user_request_name(uint32_t request);

#define VHOST_USER_VERSION	   0x1u
#define VHOST_USER_VERSION_MASK	   0x3u
#define VHOST_USER_REPLY_FLAG	   (1u << 2)
#define VHOST_USER_NEED_REPLY_FLAG (1u << 3)
#define VHOST_USER_MAX_PAYLOAD	   4096u
#define VHOST_USER_MAX_FDS	   32u
#define VHOST_USER_MAX_MEM_REGIONS 32u
#define VHOST_USER_MAX_MEM_SLOTS   509u
#define VHOST_USER_VRING_IDX_MASK  0xffu
#define VHOST_USER_VRING_NOFD_MASK (1u << 8)

/* A feature bit number as a mask: VHOST_FEATURE(VIRTIO_F_VERSION_1). */
#define VHOST_FEATURE(bit) (1ull << (bit))

/* Protocol features (GET_PROTOCOL_FEATURES bit numbers). */
#define VHOST_USER_PROTOCOL_F_MQ		  0
#define VHOST_USER_PROTOCOL_F_LOG_SHMFD		  1
#define VHOST_USER_PROTOCOL_F_REPLY_ACK		  3
#define VHOST_USER_PROTOCOL_F_CONFIG		  9
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD	  12
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

/* Feature bit 30: the front end may negotiate protocol features. */
#define VHOST_USER_F_PROTOCOL_FEATURES 30

struct vhost_user_header {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vhost_user_vring_state {
	uint32_t index;
	uint32_t num;
} __attribute__((packed));

struct vhost_user_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
} __attribute__((packed));

struct vhost_user_mem_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
} __attribute__((packed));

struct vhost_user_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhost_user_mem_region regions[VHOST_USER_MAX_MEM_REGIONS];
} __attribute__((packed));

struct vhost_user_single_mem_region {
	uint64_t padding;
	struct vhost_user_mem_region region;
} __attribute__((packed));

struct vhost_user_config_header {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
} __attribute__((packed));

/* virtio-blk config space (virtio 1.2 §5.2.4), the first 60 bytes: up to
 * write_zeroes_may_unmap, the last field of a feature this device offers.
 * GET_CONFIG pads a longer read with zeros. */
struct virtio_blk_config_space {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

_Static_assert(sizeof(struct virtio_blk_config_space) == 60, "virtio-blk config is 60 bytes");
_Static_assert(sizeof(struct vhost_user_vring_addr) == 40, "vring addr is 40 bytes");

#endif

/* The kernel's ublk interface (include/uapi/linux/ublk_cmd.h), written out
 * here because Debian 12's linux-libc-dev (6.1) lacks the ioctl-encoded
 * opcodes and GET_FEATURES that later kernels use. Only what ublk-backend
 * sends or reads is defined. Layouts are the kernel ABI: the asserts below
 * pin every size the kernel checks. */
#ifndef UBIBLK_UBLK_WIRE_H
#define UBIBLK_UBLK_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define UBLK_CONTROL_PATH "/dev/ublk-control"
#define UBLK_CHAR_PREFIX  "/dev/ublkc"
#define UBLK_BLOCK_PREFIX "/dev/ublkb"

/* Kernel limits (UBLK_MAX_QUEUE_DEPTH, UBLK_MAX_NR_QUEUES). */
#define UBLK_WIRE_MAX_QUEUE_DEPTH 4096u
#define UBLK_WIRE_MAX_QUEUES	  4096u
/* The largest per-request buffer the kernel accepts (UBLK_MAX_IO_BUF_BYTES
 * is 1 MiB in some kernels; 32 MiB is libublk's ceiling). */
#define UBLK_WIRE_MAX_IO_BUF_BYTES (32u << 20)

/* Control command payload, in the SQE's command area (needs 128-byte SQEs). */
struct ublk_wire_ctrl_cmd {
	uint32_t dev_id;
	uint16_t queue_id; /* 0xffff: no queue */
	uint16_t len;	   /* of the buffer at addr */
	uint64_t addr;
	uint64_t data[1];
	uint16_t dev_path_len;
	uint16_t pad;
	uint32_t reserved;
};
_Static_assert(sizeof(struct ublk_wire_ctrl_cmd) == 32, "ublksrv_ctrl_cmd is 32 bytes");

#define UBLK_WIRE_NO_QUEUE   0xffffu
#define UBLK_WIRE_NEW_DEVICE 0xffffffffu /* ADD_DEV: let the kernel pick the id */

/* Control command numbers (the legacy opcode is the number alone). */
enum ublk_wire_ctrl_nr {
	UBLK_WIRE_GET_QUEUE_AFFINITY = 0x01,
	UBLK_WIRE_GET_DEV_INFO = 0x02,
	UBLK_WIRE_ADD_DEV = 0x04,
	UBLK_WIRE_DEL_DEV = 0x05,
	UBLK_WIRE_START_DEV = 0x06,
	UBLK_WIRE_STOP_DEV = 0x07,
	UBLK_WIRE_SET_PARAMS = 0x08,
	UBLK_WIRE_GET_DEV_INFO2 = 0x12,
	UBLK_WIRE_GET_FEATURES = 0x13,
};
/* The highest number that also exists as a legacy opcode. */
#define UBLK_WIRE_LAST_LEGACY_CTRL 0x12

/* ioctl-style encoding ('u', nr, struct ublksrv_ctrl_cmd), as _IOR/_IOWR. */
static inline uint32_t ublk_wire_ctrl_opcode(enum ublk_wire_ctrl_nr nr)
{
	switch (nr) {
	case UBLK_WIRE_GET_QUEUE_AFFINITY:
	case UBLK_WIRE_GET_DEV_INFO:
	case UBLK_WIRE_GET_DEV_INFO2:
	case UBLK_WIRE_GET_FEATURES:
		return (uint32_t)_IOR('u', nr, struct ublk_wire_ctrl_cmd);
	default:
		return (uint32_t)_IOWR('u', nr, struct ublk_wire_ctrl_cmd);
	}
}

struct ublk_wire_dev_info {
	uint16_t nr_hw_queues;
	uint16_t queue_depth;
	uint16_t state;
	uint16_t pad0;
	uint32_t max_io_buf_bytes;
	uint32_t dev_id;
	int32_t ublksrv_pid;
	uint32_t pad1;
	uint64_t flags;
	uint64_t ublksrv_flags;
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint64_t reserved1;
	uint64_t reserved2;
};
_Static_assert(sizeof(struct ublk_wire_dev_info) == 64, "ublksrv_ctrl_dev_info is 64 bytes");

#define UBLK_WIRE_STATE_LIVE 1u

/* dev_info.flags the kernel sets on its own. */
#define UBLK_WIRE_F_CMD_IOCTL_ENCODE (1ull << 6)

/* I/O descriptor: one per tag, in the array the kernel maps read-only. */
struct ublk_wire_io_desc {
	uint32_t op_flags; /* op: low 8 bits; flags: the rest */
	uint32_t nr_sectors;
	uint64_t start_sector;
	uint64_t addr;
};
_Static_assert(sizeof(struct ublk_wire_io_desc) == 24, "ublksrv_io_desc is 24 bytes");

enum ublk_wire_io_op {
	UBLK_WIRE_OP_READ = 0,
	UBLK_WIRE_OP_WRITE = 1,
	UBLK_WIRE_OP_FLUSH = 2,
	UBLK_WIRE_OP_DISCARD = 3,
	UBLK_WIRE_OP_WRITE_ZEROES = 5,
};
/* WRITE_ZEROES: keep the range allocated (FALLOC_FL_ZERO_RANGE, not a hole). */
#define UBLK_WIRE_IO_F_NOUNMAP (1u << 15)

/* Where queue q's descriptor array is in the char device's mmap space: each
 * queue has room for the largest depth, rounded up to pages. */
static inline uint64_t ublk_wire_desc_offset(uint32_t q_id, long page_size)
{
	uint64_t per_queue = (uint64_t)UBLK_WIRE_MAX_QUEUE_DEPTH * sizeof(struct ublk_wire_io_desc);
	uint64_t page = (uint64_t)page_size;
	per_queue = (per_queue + page - 1) / page * page;
	return (uint64_t)q_id * per_queue;
}

/* I/O command payload; fits the 16-byte command area of a 64-byte SQE. */
struct ublk_wire_io_cmd {
	uint16_t q_id;
	uint16_t tag;
	int32_t result; /* COMMIT: bytes done, or a negative errno */
	uint64_t addr;	/* the tag's data buffer */
};
_Static_assert(sizeof(struct ublk_wire_io_cmd) == 16, "ublksrv_io_cmd is 16 bytes");

enum ublk_wire_io_nr {
	UBLK_WIRE_FETCH_REQ = 0x20,
	UBLK_WIRE_COMMIT_AND_FETCH_REQ = 0x21,
};

static inline uint32_t ublk_wire_io_opcode(enum ublk_wire_io_nr nr, int ioctl_encode)
{
	return ioctl_encode ? (uint32_t)_IOWR('u', nr, struct ublk_wire_io_cmd) : (uint32_t)nr;
}

/* The result of a FETCH / COMMIT_AND_FETCH: a request arrived (OK), or the
 * device is going away (ABORT, -ENODEV). */
#define UBLK_WIRE_IO_RES_OK 0

struct ublk_wire_param_basic {
	uint32_t attrs;
	uint8_t logical_bs_shift;
	uint8_t physical_bs_shift;
	uint8_t io_opt_shift;
	uint8_t io_min_shift;
	uint32_t max_sectors;
	uint32_t chunk_sectors;
	uint64_t dev_sectors;
	uint64_t virt_boundary_mask;
};
_Static_assert(sizeof(struct ublk_wire_param_basic) == 32, "ublk_param_basic is 32 bytes");

#define UBLK_WIRE_ATTR_VOLATILE_CACHE (1u << 2)

struct ublk_wire_param_discard {
	uint32_t discard_alignment;
	uint32_t discard_granularity;
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	uint16_t max_discard_segments;
	uint16_t reserved0;
};
_Static_assert(sizeof(struct ublk_wire_param_discard) == 20, "ublk_param_discard is 20 bytes");

/* The first part of struct ublk_params; `len` tells the kernel how much of
 * it we send, `types` which parts it must read. */
struct ublk_wire_params {
	uint32_t len;
	uint32_t types;
	struct ublk_wire_param_basic basic;
	struct ublk_wire_param_discard discard;
};
_Static_assert(offsetof(struct ublk_wire_params, discard) == 40, "ublk_params layout");

#define UBLK_WIRE_PARAM_TYPE_BASIC   (1u << 0)
#define UBLK_WIRE_PARAM_TYPE_DISCARD (1u << 1)

#endif

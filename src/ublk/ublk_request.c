/* One ublk request: checked against the device, handed to the device
 * channel, and turned into the result committed back to the kernel. The
 * kernel already keeps requests inside the disk; the checks are here anyway
 * because a descriptor is memory the kernel writes and we only read. */
#include "ublk/ublk_internal.h"

#include <errno.h>

#include "common/common.h"

static bool within(uint64_t sector, uint64_t count, uint64_t capacity)
{
	return sector <= capacity && count <= capacity - sector;
}

/* 0 when the request may go to the device, else the errno to commit. */
static int check(const struct ublk_request *req, const struct ublk_request_limits *limits)
{
	switch (req->op) {
	case UBLK_WIRE_OP_READ:
	case UBLK_WIRE_OP_WRITE:
		if ((uint64_t)req->sectors * SECTOR_SIZE > limits->buf_bytes)
			return -EIO;
		return within(req->sector, req->sectors, limits->capacity) ? 0 : -EIO;
	case UBLK_WIRE_OP_FLUSH:
		return 0;
	case UBLK_WIRE_OP_DISCARD:
	case UBLK_WIRE_OP_WRITE_ZEROES:
		if (!limits->discard)
			return -EOPNOTSUPP;
		return within(req->sector, req->sectors, limits->capacity) ? 0 : -EIO;
	default:
		return -EOPNOTSUPP;
	}
}

int ublk_request_start(struct bdev_channel *ch, const struct ublk_request *req,
		       const struct ublk_request_limits *limits, void *buf, struct iovec *iov,
		       uint16_t tag)
{
	int rc = check(req, limits);
	if (rc < 0)
		return rc;
	iov->iov_base = buf;
	iov->iov_len = (size_t)req->sectors * SECTOR_SIZE;
	switch (req->op) {
	case UBLK_WIRE_OP_READ:
		bdev_add_readv(ch, req->sector, iov, 1, tag);
		break;
	case UBLK_WIRE_OP_WRITE:
		bdev_add_writev(ch, req->sector, iov, 1, tag);
		break;
	case UBLK_WIRE_OP_FLUSH:
		bdev_add_flush(ch, tag);
		break;
	case UBLK_WIRE_OP_DISCARD:
		bdev_add_discard(ch, req->sector, req->sectors, tag);
		break;
	case UBLK_WIRE_OP_WRITE_ZEROES:
		bdev_add_write_zeroes(ch, req->sector, req->sectors,
				      !(req->flags & UBLK_WIRE_IO_F_NOUNMAP), tag);
		break;
	}
	return 0;
}

int32_t ublk_request_result(const struct ublk_request *req, int device_result)
{
	/* The kernel gets a plain I/O error for a failed stripe, as for any
	 * other device error (its counting apart is ours, bdev.h). */
	if (device_result == BDEV_ERR_STRIPE_FAILED)
		return -EIO;
	if (device_result < 0)
		return device_result;
	/* The kernel completes a read or write by the committed byte count and
	 * re-issues whatever is left: anything short would loop. */
	if (req->op == UBLK_WIRE_OP_READ || req->op == UBLK_WIRE_OP_WRITE)
		return (int32_t)((uint64_t)req->sectors * SECTOR_SIZE);
	return 0;
}

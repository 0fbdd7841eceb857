/* Parsing and checking virtio-blk requests. Every value comes from the guest:
 * the chain's shape, its addresses and lengths, the header, the segments.
 * A request that fails a check is completed with an error status when its
 * status byte can be written, and is returned without one otherwise. */
#include "vhost/blk_request.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "vhost/vhost.h"

/* Header and status around the data: what a chain may carry beyond the
 * largest data payload accepted. */
#define BLK_REQUEST_FRAMING_BYTES (sizeof(struct virtio_blk_outhdr) + 1)

_Static_assert(VHOST_BLK_MAX_DISCARD_SEG == 1,
	       "a DISCARD/WRITE_ZEROES request maps to exactly one device operation");

int blk_request_init(struct blk_request *req, int iov_cap)
{
	memset(req, 0, sizeof(*req));
	if (iov_cap < 1 || iov_cap > BLK_REQUEST_MAX_IOV)
		iov_cap = BLK_REQUEST_MAX_IOV;
	req->iov = calloc((size_t)iov_cap, sizeof(struct iovec));
	if (!req->iov)
		return -ENOMEM;
	req->iov_cap = iov_cap;
	return 0;
}

void blk_request_fini(struct blk_request *req)
{
	free(req->iov);
	req->iov = NULL;
	req->iov_cap = 0;
}

/* Copies up to len bytes out of an iovec window; returns the count copied. */
static size_t iov_gather(const struct iovec *iov, int cnt, void *buf, size_t len)
{
	uint8_t *out = buf;
	size_t done = 0;
	for (int i = 0; i < cnt && done < len; i++) {
		size_t chunk = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy(out + done, iov[i].iov_base, chunk);
		done += chunk;
	}
	guest_compiler_barrier();
	return done;
}

static size_t iov_scatter(const struct iovec *iov, int cnt, const void *buf, size_t len)
{
	const uint8_t *in = buf;
	size_t done = 0;
	for (int i = 0; i < cnt && done < len; i++) {
		size_t chunk = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy(iov[i].iov_base, in + done, chunk);
		done += chunk;
	}
	return done;
}

/* Drops `len` bytes from the front of the window iov[*start..end). */
static void iov_trim_front(struct iovec *iov, int *start, int end, size_t len)
{
	while (len > 0 && *start < end) {
		struct iovec *v = &iov[*start];
		size_t chunk = v->iov_len < len ? v->iov_len : len;
		v->iov_base = (uint8_t *)v->iov_base + chunk;
		v->iov_len -= chunk;
		len -= chunk;
		if (v->iov_len == 0)
			(*start)++;
	}
}

static void iov_trim_back(struct iovec *iov, int start, int *end, size_t len)
{
	while (len > 0 && *end > start) {
		struct iovec *v = &iov[*end - 1];
		size_t chunk = v->iov_len < len ? v->iov_len : len;
		v->iov_len -= chunk;
		len -= chunk;
		if (v->iov_len == 0)
			(*end)--;
	}
}

/* Appends the guest buffer [addr, addr+len) to req->iov, growing the array
 * up to BLK_REQUEST_MAX_IOV. 0, -EFAULT (unmapped) or -E2BIG. */
static int append_buffer(struct blk_request *req, int *cnt, const struct guest_memory *mem,
			 uint64_t addr, uint32_t len)
{
	for (;;) {
		int rc = guest_memory_iovec(mem, addr, len, req->iov, cnt, req->iov_cap);
		if (rc != -E2BIG || req->iov_cap >= BLK_REQUEST_MAX_IOV)
			return rc;
		int cap =
		    req->iov_cap * 2 < BLK_REQUEST_MAX_IOV ? req->iov_cap * 2 : BLK_REQUEST_MAX_IOV;
		struct iovec *grown = realloc(req->iov, (size_t)cap * sizeof(struct iovec));
		if (!grown)
			return -E2BIG;
		req->iov = grown;
		req->iov_cap = cap;
	}
}

/* The chain as collected: iov[0..readable) then iov[readable..cnt). */
struct chain_layout {
	int readable;
	int cnt;
	uint64_t readable_len;
	uint64_t writable_len;
};

/* Walks the whole chain (so that its status byte is found even when
 * something before it is wrong) and collects its buffers. */
static uint8_t collect_chain(struct blk_request *req, const struct virtqueue *vq,
			     const struct guest_memory *mem, const struct blk_request_limits *lim,
			     struct chain_layout *layout)
{
	struct virtqueue_chain chain;
	struct virtqueue_desc d;
	struct virtqueue_desc last = {0};
	const char *problem = NULL;
	bool seen_writable = false;
	uint64_t total = 0;
	int rc;

	memset(layout, 0, sizeof(*layout));
	virtqueue_chain_start(vq, req->head, &chain);
	while ((rc = virtqueue_chain_next(&chain, mem, &d)) == 1) {
		last = d;
		total += d.len; /* < 2^48: at most 65535 + 32768 descriptors */
		if (problem)
			continue;
		if (total > lim->max_bytes + BLK_REQUEST_FRAMING_BYTES) {
			problem = "request larger than the maximum request size";
			continue;
		}
		if (!d.writable && seen_writable) {
			problem = "device-readable descriptor after a device-writable one";
			continue;
		}
		seen_writable |= d.writable;
		rc = append_buffer(req, &layout->cnt, mem, d.addr, d.len);
		if (rc == -EFAULT) {
			problem = "buffer outside guest memory";
			continue;
		}
		if (rc < 0) {
			problem = "too many buffer segments";
			continue;
		}
		if (d.writable) {
			layout->writable_len += d.len;
		} else {
			layout->readable = layout->cnt;
			layout->readable_len += d.len;
		}
	}
	if (rc < 0) {
		req->error = "malformed descriptor chain (index out of range, loop or bad "
			     "indirect table)";
		return VIRTIO_BLK_S_IOERR;
	}

	uint64_t status_gpa;
	if (last.writable && last.len >= 1 &&
	    !u64_add_overflows(last.addr, last.len - 1, &status_gpa))
		req->status = guest_memory_ptr(mem, status_gpa, 1);
	if (!req->status) {
		req->error = "no device-writable status byte at the end of the chain";
		return VIRTIO_BLK_S_IOERR;
	}
	if (problem) {
		req->error = problem;
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static bool range_fits(uint64_t sector, uint64_t count, uint64_t capacity)
{
	return sector <= capacity && count <= capacity - sector;
}

static uint8_t refuse(struct blk_request *req, uint8_t status, const char *why)
{
	req->error = why;
	return status;
}

static uint8_t check_read_write(struct blk_request *req, const struct blk_request_limits *lim)
{
	if (req->data_len % SECTOR_SIZE != 0)
		return refuse(req, VIRTIO_BLK_S_IOERR, "data length not a multiple of 512");
	if (req->data_len > lim->max_bytes)
		return refuse(req, VIRTIO_BLK_S_IOERR, "request larger than the maximum size");
	req->num_sectors = req->data_len / SECTOR_SIZE;
	if (!range_fits(req->sector, req->num_sectors, lim->capacity))
		return refuse(req, VIRTIO_BLK_S_IOERR, "sector range past the end of the device");
	if (req->type == VIRTIO_BLK_T_OUT && lim->read_only)
		return refuse(req, VIRTIO_BLK_S_IOERR, "write to a read-only device");
	return VIRTIO_BLK_S_OK;
}

static uint8_t parse_segment(struct blk_request *req, const struct blk_request_limits *lim)
{
	struct virtio_blk_discard_write_zeroes seg;
	if (req->data_len == 0 || req->data_len % sizeof(seg) != 0)
		return refuse(req, VIRTIO_BLK_S_IOERR, "discard/write-zeroes payload size");
	if (req->data_len / sizeof(seg) > VHOST_BLK_MAX_DISCARD_SEG)
		return refuse(req, VIRTIO_BLK_S_UNSUPP,
			      "more discard/write-zeroes segments than "
			      "advertised");
	iov_gather(req->data, req->data_cnt, &seg, sizeof(seg));
	uint32_t flags = le32toh(seg.flags);
	req->sector = le64toh(seg.sector);
	req->num_sectors = le32toh(seg.num_sectors);
	req->unmap = (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0;

	/* virtio 1.2 §5.2.6.2: unknown flags, or unmap on a discard, are
	 * unsupported. */
	if (flags & ~(uint32_t)VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
		return refuse(req, VIRTIO_BLK_S_UNSUPP, "unknown discard/write-zeroes flags");
	if (req->type == VIRTIO_BLK_T_DISCARD && req->unmap)
		return refuse(req, VIRTIO_BLK_S_UNSUPP, "unmap flag on a discard");
	if (req->num_sectors > VHOST_BLK_MAX_DISCARD_SECTORS)
		return refuse(req, VIRTIO_BLK_S_IOERR,
			      "discard/write-zeroes larger than advertised");
	if (!range_fits(req->sector, req->num_sectors, lim->capacity))
		return refuse(req, VIRTIO_BLK_S_IOERR, "sector range past the end of the device");
	if (lim->read_only)
		return refuse(req, VIRTIO_BLK_S_IOERR,
			      "discard/write-zeroes on a read-only device");
	return VIRTIO_BLK_S_OK;
}

uint8_t blk_request_parse(struct blk_request *req, const struct virtqueue *vq,
			  const struct guest_memory *mem, uint16_t head,
			  const struct blk_request_limits *lim)
{
	struct chain_layout layout;
	struct virtio_blk_outhdr hdr;

	req->head = head;
	req->type = 0;
	req->sector = 0;
	req->num_sectors = 0;
	req->unmap = false;
	req->status = NULL;
	req->error = NULL;
	req->data = NULL;
	req->data_cnt = 0;
	req->data_len = 0;
	req->written = 0;

	uint8_t status = collect_chain(req, vq, mem, lim, &layout);
	if (status != VIRTIO_BLK_S_OK)
		return status;

	int rd_start = 0;
	int rd_end = layout.readable;
	int wr_start = layout.readable;
	int wr_end = layout.cnt;
	if (iov_gather(req->iov, rd_end, &hdr, sizeof(hdr)) < sizeof(hdr))
		return refuse(req, VIRTIO_BLK_S_IOERR, "request header shorter than 16 bytes");
	req->type = le32toh(hdr.type);
	req->sector = le64toh(hdr.sector);
	iov_trim_front(req->iov, &rd_start, rd_end, sizeof(hdr));
	iov_trim_back(req->iov, wr_start, &wr_end, 1);
	uint64_t readable_data = layout.readable_len - sizeof(hdr);
	uint64_t writable_data = layout.writable_len - 1;

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_GET_ID:
		if (readable_data != 0)
			return refuse(req, VIRTIO_BLK_S_IOERR,
				      "device-readable data in a request "
				      "that returns data");
		req->data = &req->iov[wr_start];
		req->data_cnt = wr_end - wr_start;
		req->data_len = writable_data;
		if (req->type == VIRTIO_BLK_T_GET_ID)
			return VIRTIO_BLK_S_OK;
		return check_read_write(req, lim);
	case VIRTIO_BLK_T_OUT:
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (writable_data != 0)
			return refuse(req, VIRTIO_BLK_S_IOERR,
				      "device-writable data in a request "
				      "that carries data");
		req->data = &req->iov[rd_start];
		req->data_cnt = rd_end - rd_start;
		req->data_len = readable_data;
		if (req->type == VIRTIO_BLK_T_OUT)
			return check_read_write(req, lim);
		return parse_segment(req, lim);
	case VIRTIO_BLK_T_FLUSH:
		/* The sector field and any data buffers mean nothing for a flush. */
		return VIRTIO_BLK_S_OK;
	default:
		return refuse(req, VIRTIO_BLK_S_UNSUPP, "unsupported request type");
	}
}

uint8_t blk_request_get_id(struct blk_request *req, const char *device_id)
{
	char id[VIRTIO_BLK_ID_BYTES] = {0};
	if (req->data_len < sizeof(id))
		return refuse(req, VIRTIO_BLK_S_IOERR, "GET_ID buffer shorter than 20 bytes");
	if (device_id)
		memcpy(id, device_id, strnlen(device_id, sizeof(id)));
	req->written = iov_scatter(req->data, req->data_cnt, id, sizeof(id));
	return VIRTIO_BLK_S_OK;
}

uint32_t blk_request_complete(struct blk_request *req, uint8_t status)
{
	if (!req->status)
		return 0;
	if (status != VIRTIO_BLK_S_OK)
		req->written = 0; /* a lower bound is allowed (virtio 1.2 §2.7.8.1) */
	else if (req->type == VIRTIO_BLK_T_IN)
		req->written = req->data_len;
	__atomic_store_n(req->status, status, __ATOMIC_RELAXED);
	return (uint32_t)req->written + 1;
}

void blk_request_copy_from_guest(const struct blk_request *req, void *buf)
{
	iov_gather(req->data, req->data_cnt, buf, req->data_len);
}

void blk_request_copy_to_guest(const struct blk_request *req, const void *buf)
{
	iov_scatter(req->data, req->data_cnt, buf, req->data_len);
}

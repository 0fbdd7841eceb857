/* virtio-blk requests (virtio 1.2 §5.2.6): turning a descriptor chain into a
 * checked request, and the parts of executing one that need no block device
 * (GET_ID, status byte, used length, copying to and from guest buffers).
 *
 * Layout accepted (any framing, as VERSION_1 implies): the device-readable
 * bytes of the chain are the 16-byte header followed by the OUT data or the
 * DISCARD/WRITE_ZEROES segments; the device-writable bytes are the IN or
 * GET_ID data followed by the status byte, which is the last byte of the
 * last descriptor. A header may thus span descriptors and data may share a
 * descriptor with the header or the status. */
#ifndef UBIBLK_VHOST_BLK_REQUEST_H
#define UBIBLK_VHOST_BLK_REQUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_blk.h>

#include "vhost/guest_memory.h"
#include "vhost/virtqueue.h"

/* Most iovecs one request may need: the kernel's limit for one readv. */
#define BLK_REQUEST_MAX_IOV 1024
/* Largest IN/OUT request accepted unless the advertised segment limits
 * allow a larger one. */
#define BLK_REQUEST_DEFAULT_MAX_BYTES (32u << 20)

struct blk_request_limits {
	uint64_t capacity; /* sectors */
	bool read_only;
	uint64_t max_bytes; /* data bytes of one IN or OUT request */
};

struct blk_request {
	uint16_t head;
	uint32_t type;
	uint64_t sector; /* of the header, or of the DISCARD/WRITE_ZEROES segment */
	uint64_t num_sectors;
	bool unmap; /* WRITE_ZEROES may deallocate */
	/* Host address of the status byte; NULL when the chain has no usable
	 * one (then it is returned with used length 0 and nothing written). */
	uint8_t *status;
	/* Why parsing refused the request, for the log. */
	const char *error;
	/* The data buffers in guest memory: a window of iov. */
	struct iovec *data;
	int data_cnt;
	uint64_t data_len;
	/* Bytes of data written into guest buffers, for the used length. */
	uint64_t written;
	struct iovec *iov;
	int iov_cap;
};

/* Allocates room for iov_cap iovecs (grown on demand up to
 * BLK_REQUEST_MAX_IOV, and kept). 0 or -ENOMEM. */
int blk_request_init(struct blk_request *req, int iov_cap);
void blk_request_fini(struct blk_request *req);

/* Walks and checks the chain at `head`. Returns VIRTIO_BLK_S_OK when the
 * request is ready to execute, else the status it must complete with
 * (VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP, with req->error set). The
 * iovecs point into `mem`, which must stay mapped until the request ends. */
uint8_t blk_request_parse(struct blk_request *req, const struct virtqueue *vq,
			  const struct guest_memory *mem, uint16_t head,
			  const struct blk_request_limits *lim);

/* Executes a parsed GET_ID: writes the first VIRTIO_BLK_ID_BYTES (20) bytes
 * of device_id, zero padded and without terminator when it is that long. */
uint8_t blk_request_get_id(struct blk_request *req, const char *device_id);

/* Writes the status byte (if the chain has one) and returns the used length:
 * bytes written into the chain, the status byte included. */
uint32_t blk_request_complete(struct blk_request *req, uint8_t status);

/* Copy between the request's data buffers and a contiguous buffer of
 * req->data_len bytes (the bounce buffer). */
void blk_request_copy_from_guest(const struct blk_request *req, void *buf);
void blk_request_copy_to_guest(const struct blk_request *req, const void *buf);

#endif

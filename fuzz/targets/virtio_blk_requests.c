/*
 * What a guest puts on a split virtqueue: its memory image, with the
 * descriptor table, the avail ring and every buffer in it. The real
 * virtqueue.c pops the heads and walks their chains (indirect tables, loops,
 * out-of-range indices), blk_request.c turns each chain into a checked
 * virtio-blk request, which is then executed as far as it goes without a
 * block device (GET_ID, copying data in and out of guest buffers, the
 * status byte) and returned on the used ring.
 *
 * Input: an 8-byte setup, then the guest memory image from guest-physical
 * address 0 (the rest of memory is zero):
 *   [0] bits 0-2: log2 of the queue size (1..128)
 *   [1] bit 0: EVENT_IDX; bit 1: read-only device; bit 2: keep the avail
 *       index found in the image (else next_avail + [3])
 *   [2] next_avail (the ring position the device starts at)
 *   [3] how many heads the driver published
 *   [4..5] device capacity in 4 KiB units (little endian)
 *   [6] largest request: 512 << ([6] % 17) bytes
 *   [7] unused
 * The descriptor table is at 0, the avail ring right after it, the used
 * ring after that (4-byte aligned), as a driver would lay them out.
 *
 * Guest memory is a memfd mapped as three regions: [0, 32K) and [32K, 48K)
 * adjacent (buffers may span them), and [64K, 80K) after a hole. Every
 * pointer the parser hands out (data buffers, status byte) must lie inside
 * those regions and add up to the lengths it reports; a request it accepts
 * must meet the limits it was given.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/common.h"
#include "vhost/blk_request.h"
#include "vhost/guest_memory.h"
#include "vhost/vhost.h"
#include "vhost/virtqueue.h"

#define SETUP_BYTES 8u
#define FILE_BYTES  (64u << 10)
/* Data copied in and out of guest buffers only for requests up to this size. */
#define COPY_MAX (1u << 20)

struct region {
	uint64_t gpa;
	uint64_t size;
	uint64_t offset; /* in the memfd */
	const uint8_t *host;
};

static struct region regions[] = {
    {.gpa = 0, .size = 32u << 10, .offset = 0},
    {.gpa = 32u << 10, .size = 16u << 10, .offset = 32u << 10},
    {.gpa = 64u << 10, .size = 16u << 10, .offset = 48u << 10},
};
#define REGION_COUNT (sizeof(regions) / sizeof(regions[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Refused requests are logged at warning level; a broken ring (once
	 * per input) at error level, which stays. */
	setenv("UBIBLK_LOG", "error", 1);
	log_init();
	return 0;
}

/* Whether [p, p+len) lies inside one region's host mapping. */
static bool inside_guest(const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;
	for (size_t i = 0; i < REGION_COUNT; i++) {
		uintptr_t start = (uintptr_t)regions[i].host;
		if (a >= start && a - start <= regions[i].size &&
		    len <= regions[i].size - (a - start))
			return true;
	}
	return false;
}

static void check_request(const struct blk_request *req, uint8_t status,
			  const struct blk_request_limits *lim)
{
	if (req->status && !inside_guest(req->status, 1))
		abort();
	if (status != VIRTIO_BLK_S_OK) {
		if (!req->error)
			abort();
		return;
	}
	if (!req->status)
		abort();
	uint64_t sum = 0;
	for (int i = 0; i < req->data_cnt; i++) {
		if (!inside_guest(req->data[i].iov_base, req->data[i].iov_len))
			abort();
		sum += req->data[i].iov_len;
	}
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (sum != req->data_len || req->data_len > lim->max_bytes ||
		    req->data_len % SECTOR_SIZE != 0 ||
		    req->num_sectors != req->data_len / SECTOR_SIZE ||
		    req->sector > lim->capacity || req->num_sectors > lim->capacity - req->sector ||
		    (req->type == VIRTIO_BLK_T_OUT && lim->read_only))
			abort();
		break;
	case VIRTIO_BLK_T_GET_ID:
		if (sum != req->data_len)
			abort();
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (req->num_sectors > VHOST_BLK_MAX_DISCARD_SECTORS ||
		    req->sector > lim->capacity || req->num_sectors > lim->capacity - req->sector ||
		    lim->read_only || (req->type == VIRTIO_BLK_T_DISCARD && req->unmap))
			abort();
		break;
	case VIRTIO_BLK_T_FLUSH:
		break;
	default:
		abort(); /* an unknown type must be refused */
	}
}

/* Runs what needs no block device, then completes the request. */
static uint32_t execute(struct blk_request *req, uint8_t status)
{
	if (status == VIRTIO_BLK_S_OK && req->type == VIRTIO_BLK_T_GET_ID)
		status = blk_request_get_id(req, "ubiblk-fuzz-device-id");
	if (status == VIRTIO_BLK_S_OK && req->data_len <= COPY_MAX &&
	    (req->type == VIRTIO_BLK_T_IN || req->type == VIRTIO_BLK_T_OUT)) {
		uint8_t *bounce = malloc(req->data_len ? req->data_len : 1);
		if (!bounce)
			abort();
		if (req->type == VIRTIO_BLK_T_OUT) {
			blk_request_copy_from_guest(req, bounce);
		} else {
			memset(bounce, 0xa5, req->data_len);
			blk_request_copy_to_guest(req, bounce);
		}
		free(bounce);
	}
	uint32_t used_len = blk_request_complete(req, status);
	/* Only bytes the device wrote count: the data of an IN or GET_ID and
	 * the status byte. */
	if (used_len != 0 && (!req->status || used_len > req->written + 1 ||
			      (status != VIRTIO_BLK_S_OK && used_len != 1)))
		abort();
	if (req->status && *req->status != status)
		abort();
	return used_len;
}

static void run(const uint8_t *setup, struct guest_memory *mem, uint8_t *image)
{
	uint32_t num = 1u << (setup[0] & 7);
	uint64_t desc = 0;
	uint64_t avail = 16ull * num;
	uint64_t used = (avail + 6 + 2ull * num + 3) & ~3ull;
	struct virtqueue vq = {.event_idx = setup[1] & 1};
	if (virtqueue_map(&vq, mem, num, desc, avail, used) != 0)
		abort(); /* the layout above always fits region 0 */
	vq.next_avail = setup[2];
	vq.next_used = virtqueue_read_used_idx(&vq);
	vq.signalled_used = vq.next_used;
	if (!(setup[1] & 4)) {
		uint16_t idx = htole16((uint16_t)(vq.next_avail + setup[3]));
		memcpy(image + avail + 2, &idx, sizeof(idx));
	}
	struct blk_request_limits lim = {
	    .capacity = (uint64_t)(setup[4] | setup[5] << 8) * 8,
	    .read_only = setup[1] & 2,
	    .max_bytes = 512ull << (setup[6] % 17),
	};
	struct blk_request req;
	if (blk_request_init(&req, 4) != 0)
		abort();
	virtqueue_disable_notify(&vq);
	bool unpopped = false;
	/* More pops than the ring holds: a driver cannot publish more. */
	for (uint32_t i = 0; i <= num + 1; i++) {
		uint16_t head;
		int rc = virtqueue_pop(&vq, &head);
		if (rc < 0) {
			if (!vq.broken || virtqueue_pop(&vq, &head) != -EIO)
				abort();
			break;
		}
		if (rc == 0)
			break;
		if (head >= num)
			abort();
		if (!unpopped) {
			/* A head given back is popped again, unchanged. */
			uint16_t again;
			unpopped = true;
			virtqueue_unpop(&vq);
			if (virtqueue_pop(&vq, &again) != 1 || again != head)
				abort();
		}
		uint8_t status = blk_request_parse(&req, &vq, mem, head, &lim);
		check_request(&req, status, &lim);
		virtqueue_push(&vq, head, execute(&req, status));
	}
	virtqueue_publish_used(&vq);
	(void)virtqueue_should_notify(&vq);
	(void)virtqueue_enable_notify(&vq);
	blk_request_fini(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < SETUP_BYTES)
		return 0;
	int fd = memfd_create("fuzz-guest", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, FILE_BYTES) != 0)
		abort();
	uint8_t *file = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (file == MAP_FAILED)
		abort();
	/* The image goes to guest-physical addresses, across the regions. */
	const uint8_t *image = data + SETUP_BYTES;
	size_t image_len = size - SETUP_BYTES;
	for (size_t i = 0; i < REGION_COUNT && image_len > 0; i++) {
		if (image_len <= regions[i].gpa)
			break;
		size_t n = image_len - regions[i].gpa;
		if (n > regions[i].size)
			n = regions[i].size;
		memcpy(file + regions[i].offset, image + regions[i].gpa, n);
	}

	struct guest_memory *mem = guest_memory_new(-1);
	if (!mem)
		abort();
	for (size_t i = 0; i < REGION_COUNT; i++) {
		struct vhost_user_mem_region r = {
		    .guest_phys_addr = regions[i].gpa,
		    .memory_size = regions[i].size,
		    .userspace_addr = 0x7f0000000000ull + regions[i].gpa,
		    .mmap_offset = regions[i].offset,
		};
		struct guest_memory *next;
		if (guest_memory_add(mem, &r, fd, &next) != 0)
			abort();
		guest_memory_unref(mem);
		mem = next;
		regions[i].host = guest_memory_ptr(mem, regions[i].gpa, regions[i].size);
		if (!regions[i].host)
			abort();
	}
	close(fd);
	/* Region 0 through the table's mapping: the rings the device sees. */
	run(data, mem, (uint8_t *)regions[0].host);
	guest_memory_unref(mem);
	munmap(file, FILE_BYTES);
	return 0;
}

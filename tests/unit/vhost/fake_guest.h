/* A fake guest for the data-plane tests: guest memory in a memfd, mapped as
 * two adjacent regions (so buffers can span regions), and a split virtqueue
 * laid out by hand the way a driver would, including hostile layouts. */
#ifndef UBIBLK_TEST_FAKE_GUEST_H
#define UBIBLK_TEST_FAKE_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>

#include "vhost/guest_memory.h"

/* Guest-physical layout. Region 0 is [0, FG_REGION_SIZE), region 1 follows
 * it directly; FG_SPLIT is the boundary between them. */
#define FG_REGION_SIZE (4u << 20)
#define FG_MEM_SIZE    (2 * FG_REGION_SIZE)
#define FG_SPLIT       FG_REGION_SIZE
#define FG_DESC	       0x0000u
#define FG_AVAIL       0x40000u
#define FG_USED	       0x50000u
#define FG_INDIRECT    0x60000u /* room for indirect tables */
#define FG_BUFFERS     0x100000u
/* An address no region maps. */
#define FG_UNMAPPED 0x40000000u

struct fake_guest {
	int fd;
	uint8_t *host; /* the test's own mapping of all guest memory */
	struct guest_memory *mem;
	uint32_t num;
	uint16_t avail_idx;
	uint16_t next_desc;
	uint64_t next_buffer;
};

struct fake_buf {
	uint64_t gpa;
	uint32_t len;
	uint16_t flags; /* VRING_DESC_F_WRITE, ... */
};

void fake_guest_init(struct fake_guest *g, uint32_t num);
void fake_guest_fini(struct fake_guest *g);

/* Host pointer (test side) for guest-physical address gpa. */
void *fg_ptr(struct fake_guest *g, uint64_t gpa);
/* A fresh guest buffer of len bytes aligned to `align`, plus `offset`. */
uint64_t fg_alloc(struct fake_guest *g, uint32_t len, uint32_t align, uint32_t offset);

/* Writes descriptor `index` of the ring (or of a table at table_gpa). */
void fg_write_desc(struct fake_guest *g, uint64_t table_gpa, uint32_t index, uint64_t addr,
		   uint32_t len, uint16_t flags, uint16_t next);
/* Lays out a chain in consecutive ring descriptors linked with NEXT and
 * returns its head (not yet made available). */
uint16_t fg_chain(struct fake_guest *g, const struct fake_buf *bufs, int n);
/* The same in an indirect table at table_gpa; one ring descriptor points at it. */
uint16_t fg_indirect_chain(struct fake_guest *g, uint64_t table_gpa, const struct fake_buf *bufs,
			   int n);
/* Puts a head in the avail ring; publish() makes everything put visible. */
void fg_put(struct fake_guest *g, uint16_t head);
void fg_publish(struct fake_guest *g);
/* fg_put + fg_publish */
void fg_make_available(struct fake_guest *g, uint16_t head);

/* A request header (type, sector) at a fresh buffer; returns its gpa. */
uint64_t fg_header(struct fake_guest *g, uint32_t type, uint64_t sector);
/* A one-byte status buffer preset to 0xff; returns its gpa. */
uint64_t fg_status(struct fake_guest *g);

uint16_t fg_used_idx(struct fake_guest *g);
struct vring_used_elem fg_used_elem(struct fake_guest *g, uint16_t i);
uint16_t fg_used_flags(struct fake_guest *g);
uint16_t fg_avail_event(struct fake_guest *g);
void fg_set_used_event(struct fake_guest *g, uint16_t v);
void fg_set_avail_flags(struct fake_guest *g, uint16_t v);
void fg_set_avail_idx(struct fake_guest *g, uint16_t v);
void fg_set_avail_entry(struct fake_guest *g, uint16_t slot, uint16_t head);
void fg_set_used_idx(struct fake_guest *g, uint16_t v);

#endif

/* Fake guest memory and driver-side ring writes for the data-plane tests. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "fake_guest.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FG_UVA_BASE 0x7f0000000000ull

void fake_guest_init(struct fake_guest *g, uint32_t num)
{
	memset(g, 0, sizeof(*g));
	g->fd = memfd_create("fake-guest", MFD_CLOEXEC);
	assert_true(g->fd >= 0);
	assert_int_equal(ftruncate(g->fd, FG_MEM_SIZE), 0);
	g->host = mmap(NULL, FG_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	assert_true(g->host != MAP_FAILED);

	struct guest_memory *empty = guest_memory_new(-1);
	assert_non_null(empty);
	struct guest_memory *one;
	struct vhost_user_mem_region r0 = {.guest_phys_addr = 0,
					   .memory_size = FG_REGION_SIZE,
					   .userspace_addr = FG_UVA_BASE,
					   .mmap_offset = 0};
	assert_int_equal(guest_memory_add(empty, &r0, g->fd, &one), 0);
	struct vhost_user_mem_region r1 = {.guest_phys_addr = FG_SPLIT,
					   .memory_size = FG_REGION_SIZE,
					   .userspace_addr = FG_UVA_BASE + FG_SPLIT,
					   .mmap_offset = FG_SPLIT};
	assert_int_equal(guest_memory_add(one, &r1, g->fd, &g->mem), 0);
	guest_memory_unref(empty);
	guest_memory_unref(one);

	g->num = num;
	g->next_buffer = FG_BUFFERS;
}

void fake_guest_fini(struct fake_guest *g)
{
	guest_memory_unref(g->mem);
	munmap(g->host, FG_MEM_SIZE);
	close(g->fd);
}

void *fg_ptr(struct fake_guest *g, uint64_t gpa)
{
	assert_true(gpa < FG_MEM_SIZE);
	return g->host + gpa;
}

uint64_t fg_alloc(struct fake_guest *g, uint32_t len, uint32_t align, uint32_t offset)
{
	uint64_t gpa = (g->next_buffer + align - 1) / align * align + offset;
	assert_true(gpa + len <= FG_SPLIT);
	g->next_buffer = gpa + len;
	return gpa;
}

void fg_write_desc(struct fake_guest *g, uint64_t table_gpa, uint32_t index, uint64_t addr,
		   uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc *d = fg_ptr(g, table_gpa + 16ull * index);
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

static uint16_t write_chain(struct fake_guest *g, uint64_t table_gpa, uint32_t table_size,
			    uint32_t first, const struct fake_buf *bufs, int n)
{
	for (int i = 0; i < n; i++) {
		uint32_t index = (first + (uint32_t)i) % table_size;
		uint16_t next = (uint16_t)((index + 1) % table_size);
		uint16_t flags = bufs[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0);
		fg_write_desc(g, table_gpa, index, bufs[i].gpa, bufs[i].len, flags,
			      i + 1 < n ? next : 0);
	}
	return (uint16_t)(first % table_size);
}

uint16_t fg_chain(struct fake_guest *g, const struct fake_buf *bufs, int n)
{
	uint16_t head = write_chain(g, FG_DESC, g->num, g->next_desc, bufs, n);
	g->next_desc = (uint16_t)((g->next_desc + (uint32_t)n) % g->num);
	return head;
}

uint16_t fg_indirect_chain(struct fake_guest *g, uint64_t table_gpa, const struct fake_buf *bufs,
			   int n)
{
	write_chain(g, table_gpa, (uint32_t)n, 0, bufs, n);
	uint16_t head = g->next_desc;
	fg_write_desc(g, FG_DESC, head, table_gpa, 16u * (uint32_t)n, VRING_DESC_F_INDIRECT, 0);
	g->next_desc = (uint16_t)((g->next_desc + 1u) % g->num);
	return head;
}

void fg_put(struct fake_guest *g, uint16_t head)
{
	fg_set_avail_entry(g, g->avail_idx % g->num, head);
	g->avail_idx++;
}

void fg_publish(struct fake_guest *g)
{
	struct vring_avail *avail = fg_ptr(g, FG_AVAIL);
	__atomic_store_n(&avail->idx, g->avail_idx, __ATOMIC_RELEASE);
}

void fg_make_available(struct fake_guest *g, uint16_t head)
{
	fg_put(g, head);
	fg_publish(g);
}

uint64_t fg_header(struct fake_guest *g, uint32_t type, uint64_t sector)
{
	uint64_t gpa = fg_alloc(g, 16, 16, 0);
	struct virtio_blk_outhdr *h = fg_ptr(g, gpa);
	h->type = type;
	h->ioprio = 0;
	h->sector = sector;
	return gpa;
}

uint64_t fg_status(struct fake_guest *g)
{
	uint64_t gpa = fg_alloc(g, 1, 1, 0);
	*(uint8_t *)fg_ptr(g, gpa) = 0xff;
	return gpa;
}

uint16_t fg_used_idx(struct fake_guest *g)
{
	struct vring_used *used = fg_ptr(g, FG_USED);
	return __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE);
}

struct vring_used_elem fg_used_elem(struct fake_guest *g, uint16_t i)
{
	struct vring_used *used = fg_ptr(g, FG_USED);
	return used->ring[i % g->num];
}

uint16_t fg_used_flags(struct fake_guest *g)
{
	struct vring_used *used = fg_ptr(g, FG_USED);
	return __atomic_load_n(&used->flags, __ATOMIC_ACQUIRE);
}

uint16_t fg_avail_event(struct fake_guest *g)
{
	struct vring_used *used = fg_ptr(g, FG_USED);
	return __atomic_load_n((uint16_t *)&used->ring[g->num], __ATOMIC_ACQUIRE);
}

void fg_set_used_event(struct fake_guest *g, uint16_t v)
{
	struct vring_avail *avail = fg_ptr(g, FG_AVAIL);
	__atomic_store_n(&avail->ring[g->num], v, __ATOMIC_RELEASE);
}

void fg_set_avail_flags(struct fake_guest *g, uint16_t v)
{
	struct vring_avail *avail = fg_ptr(g, FG_AVAIL);
	__atomic_store_n(&avail->flags, v, __ATOMIC_RELEASE);
}

void fg_set_avail_idx(struct fake_guest *g, uint16_t v)
{
	struct vring_avail *avail = fg_ptr(g, FG_AVAIL);
	g->avail_idx = v;
	__atomic_store_n(&avail->idx, v, __ATOMIC_RELEASE);
}

void fg_set_avail_entry(struct fake_guest *g, uint16_t slot, uint16_t head)
{
	struct vring_avail *avail = fg_ptr(g, FG_AVAIL);
	__atomic_store_n(&avail->ring[slot], head, __ATOMIC_RELAXED);
}

void fg_set_used_idx(struct fake_guest *g, uint16_t v)
{
	struct vring_used *used = fg_ptr(g, FG_USED);
	__atomic_store_n(&used->idx, v, __ATOMIC_RELEASE);
}

/* Guest memory as the front end shares it: a table of mmap'ed regions.
 *
 * A table is immutable once published and reference-counted: the control
 * thread builds a new table for every SET_MEM_TABLE / ADD_MEM_REG /
 * REM_MEM_REG and hands it to the workers; a request in flight keeps a
 * reference to the table it was parsed with, so its buffers stay mapped until
 * it completes. Every guest-physical range is checked: a byte outside every
 * region makes the whole access fail. A range may span adjacent regions. */
#ifndef UBIBLK_VHOST_GUEST_MEMORY_H
#define UBIBLK_VHOST_GUEST_MEMORY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhost/vhost_user_wire.h"

struct guest_memory;

/* An empty table (no regions). fault_fd (-1: none) is an eventfd that gets
 * written when a mapping of this table, or of any table built from it,
 * faults (see below); it must stay open as long as any of those tables. */
struct guest_memory *guest_memory_new(int fault_fd);
/* A new table: `base` (may be NULL: no fault_fd) plus one region mapped
 * from fd (the fd is not closed). Before the size check the file is sealed
 * against shrinking (F_SEAL_SHRINK) when it accepts seals. Fails with
 * -EINVAL for a zero-sized, overflowing or overlapping region, -ERANGE for
 * one extending past the end of its (regular) file, -ENOSPC past
 * VHOST_USER_MAX_MEM_SLOTS or GUEST_FAULT_SLOTS mappings in the process, or
 * fstat's or mmap's errno.
 *
 * Shrinking after the fact: every mapping is watched by the SIGBUS guard
 * (guest_fault.h). A front end that truncates an unsealed file makes the
 * next access to a vanished page fault; the guard maps zero pages over that
 * mapping, marks it broken and writes fault_fd. The access then reads zeros
 * (writes go nowhere): callers see garbage, never a crash, and stop using a
 * table once guest_memory_broken() says so. */
int guest_memory_add(const struct guest_memory *base, const struct vhost_user_mem_region *region,
		     int fd, struct guest_memory **out);
/* A new table: `base` without the region matching gpa and size; -ENOENT if none. */
int guest_memory_remove(const struct guest_memory *base, uint64_t gpa, uint64_t size,
			struct guest_memory **out);
struct guest_memory *guest_memory_ref(struct guest_memory *mem);
/* True once a mapping of the table faulted (its front end shrank the file):
 * no further request may be served from it. Any thread; NULL: false. */
bool guest_memory_broken(const struct guest_memory *mem);
void guest_memory_unref(struct guest_memory *mem);

/* Front-end virtual address to guest-physical; -EFAULT if unmapped. */
int guest_memory_va_to_gpa(const struct guest_memory *mem, uint64_t va, uint64_t *gpa);
/* Host pointer for [gpa, gpa+len) if it lies inside one region, else NULL. */
void *guest_memory_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);
/* Translate [gpa, gpa+len) into host iovecs (one per region crossed), appending
 * at iov[*iovcnt]. Returns 0, -EFAULT if any byte is unmapped, -E2BIG when
 * more than max_iov entries would be needed. */
int guest_memory_iovec(const struct guest_memory *mem, uint64_t gpa, uint64_t len,
		       struct iovec *iov, int *iovcnt, int max_iov);
/* Copy between guest memory and a host buffer; 0 or -EFAULT. */
int guest_memory_read(const struct guest_memory *mem, uint64_t gpa, void *dst, uint64_t len);
int guest_memory_write(const struct guest_memory *mem, uint64_t gpa, const void *src, uint64_t len);

/* Keeps the compiler from re-reading guest memory after a value was copied
 * out of it and checked: the guest may change it in between. */
static inline void guest_compiler_barrier(void)
{
	__asm__ __volatile__("" ::: "memory");
}

#endif

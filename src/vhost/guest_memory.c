/* Guest memory tables: immutable, reference-counted arrays of regions sorted
 * by guest-physical address. Tables built from one another share the
 * mappings of their common regions, so each mapping carries its own
 * reference count and is unmapped when the last table using it goes away. */
#include "vhost/guest_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "vhost/guest_fault.h"

struct guest_mapping {
	int refs; /* atomic */
	void *addr;
	size_t len;
	int broken;	/* atomic: a SIGBUS replaced it with zero pages */
	int fault_slot; /* its guest_fault registration */
};

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;  /* the front end's virtual address of the region */
	uint8_t *host; /* our address of gpa */
	struct guest_mapping *mapping;
};

struct guest_memory {
	int refs;     /* atomic */
	int fault_fd; /* written when one of its mappings faults; -1: none */
	uint32_t count;
	struct guest_region regions[]; /* sorted by gpa, never overlapping */
};

static void mapping_unref(struct guest_mapping *m)
{
	if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	guest_fault_unregister(m->fault_slot); /* before the range can be reused */
	munmap(m->addr, m->len);
	free(m);
}

static struct guest_memory *table_alloc(uint32_t count, int fault_fd)
{
	struct guest_memory *mem = calloc(1, sizeof(*mem) + count * sizeof(struct guest_region));
	if (!mem)
		return NULL;
	mem->refs = 1;
	mem->fault_fd = fault_fd;
	mem->count = count;
	return mem;
}

struct guest_memory *guest_memory_new(int fault_fd)
{
	return table_alloc(0, fault_fd);
}

struct guest_memory *guest_memory_ref(struct guest_memory *mem)
{
	__atomic_add_fetch(&mem->refs, 1, __ATOMIC_RELAXED);
	return mem;
}

void guest_memory_unref(struct guest_memory *mem)
{
	if (!mem || __atomic_sub_fetch(&mem->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (uint32_t i = 0; i < mem->count; i++)
		mapping_unref(mem->regions[i].mapping);
	free(mem);
}

static bool region_is_valid(const struct vhost_user_mem_region *r)
{
	uint64_t end;
	return r->memory_size != 0 &&
	       !u64_add_overflows(r->guest_phys_addr, r->memory_size, &end) &&
	       !u64_add_overflows(r->userspace_addr, r->memory_size, &end) &&
	       !u64_add_overflows(r->mmap_offset, r->memory_size, &end) &&
	       r->memory_size <= SIZE_MAX;
}

/* A shared mapping past the end of its file raises SIGBUS at the first
 * access, which would take the whole process down for a front end's lie.
 * Regular files (memfd, tmpfs, hugetlbfs) report their size, so such a
 * region is refused up front. Other kinds (device DAX) have no size to
 * check. A front end that shrinks the file later is stopped by the seal
 * (seal_against_shrinking()) where the file takes one, and otherwise
 * caught by the SIGBUS guard (guest_fault.h). */
static int check_file_size(const struct vhost_user_mem_region *r, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return 0;
	/* region_is_valid() checked that the sum does not overflow. */
	if (st.st_size < 0 || r->mmap_offset + r->memory_size > (uint64_t)st.st_size)
		return -ERANGE;
	return 0;
}

/* A memfd created with MFD_ALLOW_SEALING (QEMU's memory-backend-memfd,
 * which seals it so itself) can be sealed against shrinking: then the front
 * end's ftruncate() fails instead of pulling pages from under us. Other
 * files refuse seals (EINVAL, or EPERM once F_SEAL_SEAL is set, as for a
 * memfd made without the flag): the SIGBUS guard covers those. */
static void seal_against_shrinking(int fd)
{
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		log_debug("guest memory file not sealed against shrinking: %s", strerror(errno));
}

/* mmap needs a page-aligned file offset; the front end's offset need not be. */
static int map_region(const struct vhost_user_mem_region *r, int fd, int fault_fd,
		      struct guest_mapping **out, uint8_t **host)
{
	/* Sealed first, so the size checked next is the size that stays. */
	seal_against_shrinking(fd);
	int rc = check_file_size(r, fd);
	if (rc < 0)
		return rc;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t skew = r->mmap_offset % page;
	uint64_t len = r->memory_size + skew;
	if (len < r->memory_size || len > SIZE_MAX)
		return -EINVAL;
	struct guest_mapping *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	void *addr = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
			  (off_t)(r->mmap_offset - skew));
	if (addr == MAP_FAILED) {
		int err = -errno;
		free(m);
		return err;
	}
	m->refs = 1;
	m->addr = addr;
	m->len = (size_t)len;
	m->fault_slot = guest_fault_register(addr, (size_t)len, &m->broken, fault_fd);
	if (m->fault_slot < 0) {
		int err = m->fault_slot;
		munmap(addr, (size_t)len);
		free(m);
		return err;
	}
	*out = m;
	*host = (uint8_t *)addr + skew;
	return 0;
}

int guest_memory_add(const struct guest_memory *base, const struct vhost_user_mem_region *region,
		     int fd, struct guest_memory **out)
{
	uint32_t old_count = base ? base->count : 0;
	if (!region_is_valid(region))
		return -EINVAL;
	if (old_count >= VHOST_USER_MAX_MEM_SLOTS)
		return -ENOSPC;

	uint64_t start = region->guest_phys_addr;
	uint64_t end = start + region->memory_size;
	uint32_t pos = 0;
	for (uint32_t i = 0; i < old_count; i++) {
		const struct guest_region *r = &base->regions[i];
		if (start < r->gpa + r->size && r->gpa < end)
			return -EINVAL;
		if (r->gpa < start)
			pos = i + 1;
	}

	struct guest_memory *mem = table_alloc(old_count + 1, base ? base->fault_fd : -1);
	if (!mem)
		return -ENOMEM;
	struct guest_region *added = &mem->regions[pos];
	int rc = map_region(region, fd, mem->fault_fd, &added->mapping, &added->host);
	if (rc < 0) {
		free(mem);
		return rc;
	}
	added->gpa = start;
	added->size = region->memory_size;
	added->uva = region->userspace_addr;

	for (uint32_t i = 0; i < old_count; i++) {
		struct guest_region *dst = &mem->regions[i < pos ? i : i + 1];
		*dst = base->regions[i];
		__atomic_add_fetch(&dst->mapping->refs, 1, __ATOMIC_RELAXED);
	}
	*out = mem;
	return 0;
}

int guest_memory_remove(const struct guest_memory *base, uint64_t gpa, uint64_t size,
			struct guest_memory **out)
{
	uint32_t count = base ? base->count : 0;
	uint32_t victim = count;
	for (uint32_t i = 0; i < count; i++) {
		if (base->regions[i].gpa == gpa && base->regions[i].size == size) {
			victim = i;
			break;
		}
	}
	if (victim == count)
		return -ENOENT;

	struct guest_memory *mem = table_alloc(count - 1, base->fault_fd);
	if (!mem)
		return -ENOMEM;
	for (uint32_t i = 0, j = 0; i < count; i++) {
		if (i == victim)
			continue;
		mem->regions[j] = base->regions[i];
		__atomic_add_fetch(&mem->regions[j].mapping->refs, 1, __ATOMIC_RELAXED);
		j++;
	}
	*out = mem;
	return 0;
}

bool guest_memory_broken(const struct guest_memory *mem)
{
	if (!mem || guest_fault_count() == 0)
		return false;
	for (uint32_t i = 0; i < mem->count; i++)
		if (__atomic_load_n(&mem->regions[i].mapping->broken, __ATOMIC_ACQUIRE))
			return true;
	return false;
}

int guest_memory_va_to_gpa(const struct guest_memory *mem, uint64_t va, uint64_t *gpa)
{
	for (uint32_t i = 0; i < mem->count; i++) {
		const struct guest_region *r = &mem->regions[i];
		if (va >= r->uva && va - r->uva < r->size) {
			*gpa = va - r->uva + r->gpa;
			return 0;
		}
	}
	return -EFAULT;
}

/* The region containing gpa, by binary search over the sorted table. */
static const struct guest_region *find_region(const struct guest_memory *mem, uint64_t gpa)
{
	uint32_t lo = 0;
	uint32_t hi = mem->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct guest_region *r = &mem->regions[mid];
		if (gpa < r->gpa)
			hi = mid;
		else if (gpa - r->gpa >= r->size)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

void *guest_memory_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	const struct guest_region *r = find_region(mem, gpa);
	if (!r)
		return NULL;
	uint64_t offset = gpa - r->gpa;
	if (len > r->size - offset)
		return NULL;
	return r->host + offset;
}

/* Walks [gpa, gpa+len) region by region: the host address and length of
 * each piece in turn. */
struct chunk_walk {
	const struct guest_memory *mem;
	uint64_t gpa;
	uint64_t left;
};

static int chunk_walk_start(struct chunk_walk *w, const struct guest_memory *mem, uint64_t gpa,
			    uint64_t len)
{
	uint64_t end;
	if (u64_add_overflows(gpa, len, &end))
		return -EFAULT;
	*w = (struct chunk_walk){.mem = mem, .gpa = gpa, .left = len};
	return 0;
}

/* True with the next piece; false at the end, or with *rc = -EFAULT at a
 * byte no region maps. */
static bool chunk_walk_next(struct chunk_walk *w, uint8_t **host, uint64_t *chunk, int *rc)
{
	if (w->left == 0)
		return false;
	const struct guest_region *r = find_region(w->mem, w->gpa);
	if (!r) {
		*rc = -EFAULT;
		return false;
	}
	uint64_t offset = w->gpa - r->gpa;
	*chunk = r->size - offset < w->left ? r->size - offset : w->left;
	*host = r->host + offset;
	w->gpa += *chunk;
	w->left -= *chunk;
	return true;
}

int guest_memory_iovec(const struct guest_memory *mem, uint64_t gpa, uint64_t len,
		       struct iovec *iov, int *iovcnt, int max_iov)
{
	struct chunk_walk w;
	uint8_t *host;
	uint64_t chunk;
	int n = *iovcnt;
	int rc = chunk_walk_start(&w, mem, gpa, len);
	while (rc == 0 && chunk_walk_next(&w, &host, &chunk, &rc)) {
		if (n >= max_iov)
			return -E2BIG;
		iov[n].iov_base = host;
		iov[n].iov_len = (size_t)chunk;
		n++;
	}
	if (rc == 0)
		*iovcnt = n;
	return rc;
}

int guest_memory_read(const struct guest_memory *mem, uint64_t gpa, void *dst, uint64_t len)
{
	uint8_t *out = dst;
	struct chunk_walk w;
	uint8_t *host;
	uint64_t chunk;
	int rc = chunk_walk_start(&w, mem, gpa, len);
	while (rc == 0 && chunk_walk_next(&w, &host, &chunk, &rc)) {
		memcpy(out, host, (size_t)chunk);
		out += chunk;
	}
	return rc;
}

int guest_memory_write(const struct guest_memory *mem, uint64_t gpa, const void *src, uint64_t len)
{
	const uint8_t *in = src;
	struct chunk_walk w;
	uint8_t *host;
	uint64_t chunk;
	/* Check the whole range first so a failed write leaves guest memory untouched. */
	int rc = chunk_walk_start(&w, mem, gpa, len);
	while (rc == 0 && chunk_walk_next(&w, &host, &chunk, &rc))
		;
	if (rc < 0)
		return rc;
	chunk_walk_start(&w, mem, gpa, len);
	while (chunk_walk_next(&w, &host, &chunk, &rc)) {
		memcpy(host, in, (size_t)chunk);
		in += chunk;
	}
	return 0;
}

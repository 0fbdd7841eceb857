/* Guest memory tables: region checks, translation, ranges spanning regions,
 * and mappings that outlive the table they were added to. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "fake_guest.h"
#include "vhost/guest_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

static int make_memfd(uint64_t size)
{
	int fd = memfd_create("guest-memory-test", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static void test_region_validation(void **state)
{
	int fd = make_memfd(1 << 20);
	struct guest_memory *empty = guest_memory_new(-1);
	struct guest_memory *out = NULL;
	struct vhost_user_mem_region r = {0x1000, 0, 0x7000, 0};
	assert_int_equal(guest_memory_add(empty, &r, fd, &out), -EINVAL); /* zero size */
	r = (struct vhost_user_mem_region){UINT64_MAX - 0xfff, 0x2000, 0x7000, 0};
	assert_int_equal(guest_memory_add(empty, &r, fd, &out), -EINVAL); /* gpa overflow */
	r = (struct vhost_user_mem_region){0, 0x2000, UINT64_MAX - 0xfff, 0};
	assert_int_equal(guest_memory_add(empty, &r, fd, &out), -EINVAL); /* uva overflow */
	r = (struct vhost_user_mem_region){0, 0x2000, 0, UINT64_MAX - 0xfff};
	assert_int_equal(guest_memory_add(empty, &r, fd, &out), -EINVAL); /* offset overflow */
	r = (struct vhost_user_mem_region){0, 0x2000, 0, 0};
	assert_int_equal(guest_memory_add(empty, &r, -1, &out), -EBADF);
	assert_null(out);
	guest_memory_unref(empty);
	close(fd);
}

/* A shared mapping past the end of its file would raise SIGBUS at the first
 * access: such regions are refused, whatever part of them lies outside. */
static void test_region_past_end_of_file(void **state)
{
	long page = sysconf(_SC_PAGESIZE);
	int fd = make_memfd(1 << 20);
	struct guest_memory *out = NULL;
	struct vhost_user_mem_region r = {0, 2 << 20, 0x10000000, 0};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &out), -ERANGE); /* too long */
	r = (struct vhost_user_mem_region){0, 1 << 20, 0x10000000, (uint64_t)page};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &out), -ERANGE); /* offset pushes it out */
	r = (struct vhost_user_mem_region){0, 0x1000, 0x10000000, (1 << 20) - 0x800};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &out), -ERANGE); /* unaligned offset */
	r = (struct vhost_user_mem_region){0, 0x1000, 0x10000000, 1ull << 40};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &out), -ERANGE); /* entirely past it */
	assert_null(out);

	/* Exactly up to the end is fine, aligned or not, and every byte is usable. */
	r = (struct vhost_user_mem_region){0, (1 << 20) - 0x810, 0x10000000, 0x810};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &out), 0);
	uint8_t *last = guest_memory_ptr(out, (1 << 20) - 0x811, 1);
	assert_non_null(last);
	*last = 0x42;
	guest_memory_unref(out);

	/* A file that shrank since an earlier table is checked again. */
	assert_int_equal(ftruncate(fd, 1 << 19), 0);
	r = (struct vhost_user_mem_region){0, 1 << 20, 0x10000000, 0};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &out), -ERANGE);
	close(fd);
}

static void test_overlap_and_remove(void **state)
{
	/* 2 MiB: the region added below lies at 0x20000 and is 1 MiB long. */
	int fd = make_memfd(2 << 20);
	struct guest_memory *a, *b, *c, *d;
	struct vhost_user_mem_region r1 = {0x100000, 0x10000, 0x10000000, 0};
	assert_int_equal(guest_memory_add(NULL, &r1, fd, &a), 0);
	struct vhost_user_mem_region overlap = {0x10f000, 0x2000, 0x20000000, 0x10000};
	assert_int_equal(guest_memory_add(a, &overlap, fd, &b), -EINVAL);
	struct vhost_user_mem_region below = {0x0, 0x100000, 0x30000000, 0x20000};
	assert_int_equal(guest_memory_add(a, &below, fd, &b), 0);

	/* Sorted by gpa whatever the insertion order: both ends translate. */
	assert_non_null(guest_memory_ptr(b, 0x0, 1));
	assert_non_null(guest_memory_ptr(b, 0x10ffff, 1));
	assert_null(guest_memory_ptr(b, 0x110000, 1));

	assert_int_equal(guest_memory_remove(b, 0x100000, 0x1000, &c), -ENOENT); /* size differs */
	assert_int_equal(guest_memory_remove(b, 0x100000, 0x10000, &c), 0);
	assert_null(guest_memory_ptr(c, 0x100000, 1));
	assert_non_null(guest_memory_ptr(c, 0x0, 1));
	assert_int_equal(guest_memory_remove(c, 0x100000, 0x10000, &d), -ENOENT);

	guest_memory_unref(a);
	guest_memory_unref(b);
	guest_memory_unref(c);
	close(fd);
}

static void test_translation(void **state)
{
	int fd = make_memfd(1 << 20);
	struct guest_memory *mem;
	struct vhost_user_mem_region r = {0x200000, 0x10000, 0x7f0000001000ull, 0x3000};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &mem), 0);
	uint64_t gpa = 0;
	assert_int_equal(guest_memory_va_to_gpa(mem, 0x7f0000001000ull, &gpa), 0);
	assert_int_equal(gpa, 0x200000);
	assert_int_equal(guest_memory_va_to_gpa(mem, 0x7f0000010fffull, &gpa), 0);
	assert_int_equal(gpa, 0x20ffff);
	assert_int_equal(guest_memory_va_to_gpa(mem, 0x7f0000011000ull, &gpa), -EFAULT);
	assert_int_equal(guest_memory_va_to_gpa(mem, 0x7f0000000fffull, &gpa), -EFAULT);

	/* mmap_offset is honoured: guest byte 0x200000 is file byte 0x3000. */
	uint8_t byte = 0x5a;
	assert_int_equal(pwrite(fd, &byte, 1, 0x3000), 1);
	uint8_t *p = guest_memory_ptr(mem, 0x200000, 0x10000);
	assert_non_null(p);
	assert_int_equal(p[0], 0x5a);
	assert_null(guest_memory_ptr(mem, 0x200000, 0x10001));
	assert_null(guest_memory_ptr(mem, 0x1fffff, 1));
	assert_null(guest_memory_ptr(mem, UINT64_MAX, 1));

	/* An mmap_offset that is not page aligned. */
	struct guest_memory *skewed;
	struct vhost_user_mem_region rs = {0x400000, 0x1000, 0x1000, 0x3000 + 0x10};
	assert_int_equal(guest_memory_add(mem, &rs, fd, &skewed), 0);
	uint8_t *q = guest_memory_ptr(skewed, 0x400000 - 0x10, 1);
	assert_null(q);
	assert_int_equal(pwrite(fd, &byte, 1, 0x3010), 1);
	q = guest_memory_ptr(skewed, 0x400000, 1);
	assert_non_null(q);
	assert_int_equal(*q, 0x5a);
	guest_memory_unref(skewed);
	guest_memory_unref(mem);
	close(fd);
}

static void test_ranges_across_regions(void **state)
{
	struct fake_guest g;
	fake_guest_init(&g, 8);
	struct iovec iov[4];
	int cnt = 0;
	/* 8 bytes before the split and 8 after: two iovecs. */
	assert_int_equal(guest_memory_iovec(g.mem, FG_SPLIT - 8, 16, iov, &cnt, 4), 0);
	assert_int_equal(cnt, 2);
	assert_int_equal(iov[0].iov_len, 8);
	assert_int_equal(iov[1].iov_len, 8);
	assert_ptr_equal(iov[1].iov_base, guest_memory_ptr(g.mem, FG_SPLIT, 8));
	/* Appends after what is there. */
	assert_int_equal(guest_memory_iovec(g.mem, 0x1000, 4, iov, &cnt, 4), 0);
	assert_int_equal(cnt, 3);
	/* No room for two more. */
	assert_int_equal(guest_memory_iovec(g.mem, FG_SPLIT - 8, 16, iov, &cnt, 4), -E2BIG);
	assert_int_equal(cnt, 3);
	/* A hole past the last region; overflowing ranges. */
	assert_int_equal(guest_memory_iovec(g.mem, FG_MEM_SIZE - 4, 8, iov, &cnt, 4), -EFAULT);
	assert_int_equal(guest_memory_iovec(g.mem, UINT64_MAX - 1, 4, iov, &cnt, 4), -EFAULT);
	assert_int_equal(cnt, 3);
	/* One pointer cannot span the split. */
	assert_null(guest_memory_ptr(g.mem, FG_SPLIT - 8, 16));

	uint8_t pattern[16], back[16];
	for (int i = 0; i < 16; i++)
		pattern[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(guest_memory_write(g.mem, FG_SPLIT - 8, pattern, 16), 0);
	assert_memory_equal(fg_ptr(&g, FG_SPLIT - 8), pattern, 16);
	assert_int_equal(guest_memory_read(g.mem, FG_SPLIT - 8, back, 16), 0);
	assert_memory_equal(back, pattern, 16);
	/* A write that would leave guest memory fails without writing. */
	memset(fg_ptr(&g, FG_MEM_SIZE - 4), 0, 4);
	assert_int_equal(guest_memory_write(g.mem, FG_MEM_SIZE - 4, pattern, 8), -EFAULT);
	assert_memory_equal(fg_ptr(&g, FG_MEM_SIZE - 4), "\0\0\0\0", 4);
	assert_int_equal(guest_memory_read(g.mem, FG_MEM_SIZE - 4, back, 8), -EFAULT);
	fake_guest_fini(&g);
}

static void test_mappings_outlive_their_first_table(void **state)
{
	int fd = make_memfd(1 << 20);
	struct guest_memory *a, *b;
	struct vhost_user_mem_region r = {0, 0x10000, 0x10000, 0};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &a), 0);
	struct vhost_user_mem_region r2 = {0x10000, 0x10000, 0x20000, 0x10000};
	assert_int_equal(guest_memory_add(a, &r2, fd, &b), 0);
	uint8_t *p = guest_memory_ptr(a, 0x100, 1);
	guest_memory_unref(a);
	/* b shares a's region: still mapped, same memory. */
	assert_ptr_equal(guest_memory_ptr(b, 0x100, 1), p);
	*p = 0x77;
	uint8_t byte = 0;
	assert_int_equal(pread(fd, &byte, 1, 0x100), 1);
	assert_int_equal(byte, 0x77);
	/* A reference keeps a table alive after its creator drops it. */
	struct guest_memory *held = guest_memory_ref(b);
	guest_memory_unref(b);
	assert_ptr_equal(guest_memory_ptr(held, 0x100, 1), p);
	guest_memory_unref(held);
	close(fd);
}

static void test_slot_limit(void **state)
{
	long page = sysconf(_SC_PAGESIZE);
	int fd = make_memfd((uint64_t)page);
	struct guest_memory *mem = guest_memory_new(-1);
	for (uint32_t i = 0; i < VHOST_USER_MAX_MEM_SLOTS; i++) {
		struct vhost_user_mem_region r = {(uint64_t)i * (uint64_t)page, (uint64_t)page,
						  (uint64_t)i * (uint64_t)page, 0};
		struct guest_memory *next;
		assert_int_equal(guest_memory_add(mem, &r, fd, &next), 0);
		guest_memory_unref(mem);
		mem = next;
	}
	struct vhost_user_mem_region extra = {1ull << 40, (uint64_t)page, 1ull << 40, 0};
	struct guest_memory *next;
	assert_int_equal(guest_memory_add(mem, &extra, fd, &next), -ENOSPC);
	/* Lookups over a large table use every region. */
	for (uint32_t i = 0; i < VHOST_USER_MAX_MEM_SLOTS; i += 50)
		assert_non_null(guest_memory_ptr(mem, (uint64_t)i * (uint64_t)page + 1, 1));
	guest_memory_unref(mem);
	close(fd);
}

/* A memfd that accepts seals is sealed against shrinking when mapped: the
 * front end's ftruncate() then fails instead of pulling pages away. */
static void test_sealable_file_cannot_shrink(void **state)
{
	int fd = memfd_create("guest-memory-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	struct guest_memory *mem;
	struct vhost_user_mem_region r = {0, 1 << 20, 0x7f0000000000ull, 0};
	assert_int_equal(guest_memory_add(NULL, &r, fd, &mem), 0);
	assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK);
	assert_int_equal(ftruncate(fd, 0), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(fd, 2 << 20), 0); /* growing stays allowed */
	guest_memory_unref(mem);
	close(fd);
}

struct reader {
	struct guest_memory *mem;
	uint64_t gpa;
	int rc;
	uint8_t byte;
};

static void *read_one(void *arg)
{
	struct reader *r = arg;
	r->rc = guest_memory_read(r->mem, r->gpa, &r->byte, 1);
	return NULL;
}

/* A memfd made without MFD_ALLOW_SEALING cannot be sealed; shrunk under the
 * mapping, the next access (on another thread, as a queue worker's) would
 * raise SIGBUS and kill the process. The guard absorbs it: the access reads
 * zeros, the table is broken, its fault eventfd is readable, and a table
 * built from another file is untouched. */
static void test_shrunk_file_is_caught(void **state)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(efd >= 0);
	int fd = make_memfd(1 << 20);
	int other_fd = make_memfd(1 << 20);
	struct guest_memory *empty = guest_memory_new(efd);
	struct guest_memory *mem, *other;
	struct vhost_user_mem_region r = {0, 1 << 20, 0x7f0000000000ull, 0};
	assert_int_equal(guest_memory_add(empty, &r, fd, &mem), 0);
	assert_int_equal(guest_memory_add(NULL, &r, other_fd, &other), 0);
	guest_memory_unref(empty);
	uint8_t byte = 0x77;
	assert_int_equal(pwrite(fd, &byte, 1, 0x1000), 1);
	assert_int_equal(pwrite(other_fd, &byte, 1, 0x1000), 1);
	assert_false(guest_memory_broken(mem));

	assert_int_equal(ftruncate(fd, 0), 0);
	struct reader rd = {.mem = mem, .gpa = 0x1000, .byte = 0xff};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, read_one, &rd), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(rd.rc, 0);
	assert_int_equal(rd.byte, 0); /* zero pages now */
	assert_true(guest_memory_broken(mem));
	struct pollfd p = {.fd = efd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 1);
	/* Writes land in the zero pages, not in a crash. */
	assert_int_equal(guest_memory_write(mem, 0x2000, &byte, 1), 0);

	assert_false(guest_memory_broken(other));
	uint8_t got = 0;
	assert_int_equal(guest_memory_read(other, 0x1000, &got, 1), 0);
	assert_int_equal(got, 0x77);
	guest_memory_unref(mem);
	guest_memory_unref(other);
	close(fd);
	close(other_fd);
	close(efd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_region_validation),
	    cmocka_unit_test(test_region_past_end_of_file),
	    cmocka_unit_test(test_overlap_and_remove),
	    cmocka_unit_test(test_translation),
	    cmocka_unit_test(test_ranges_across_regions),
	    cmocka_unit_test(test_mappings_outlive_their_first_table),
	    cmocka_unit_test(test_slot_limit),
	    cmocka_unit_test(test_sealable_file_cannot_shrink),
	    cmocka_unit_test(test_shrunk_file_is_caught),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* virtio-blk request parsing and the device-less parts of execution, fed
 * with well-formed and hostile chains laid out in fake guest memory. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "fake_guest.h"
#include "vhost/blk_request.h"
#include "vhost/vhost.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NUM	 16
#define CAPACITY 2048u /* sectors */
#define W	 VRING_DESC_F_WRITE

struct fixture {
	struct fake_guest g;
	struct virtqueue vq;
	struct blk_request req;
	struct blk_request_limits lim;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	fake_guest_init(&f->g, NUM);
	assert_int_equal(virtqueue_map(&f->vq, f->g.mem, NUM, FG_DESC, FG_AVAIL, FG_USED), 0);
	/* Small on purpose: long chains must grow it. */
	assert_int_equal(blk_request_init(&f->req, 4), 0);
	f->lim = (struct blk_request_limits){.capacity = CAPACITY, .max_bytes = 1u << 20};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	blk_request_fini(&f->req);
	fake_guest_fini(&f->g);
	free(f);
	return 0;
}

static uint8_t parse_head(struct fixture *f, uint16_t head)
{
	uint16_t popped;
	fg_make_available(&f->g, head);
	assert_int_equal(virtqueue_pop(&f->vq, &popped), 1);
	assert_int_equal(popped, head);
	return blk_request_parse(&f->req, &f->vq, f->g.mem, popped, &f->lim);
}

static uint8_t parse(struct fixture *f, const struct fake_buf *bufs, int n)
{
	return parse_head(f, fg_chain(&f->g, bufs, n));
}

/* Where the device sees gpa (its own mapping, not the test's). */
static void *device_ptr(struct fixture *f, uint64_t gpa)
{
	return guest_memory_ptr(f->g.mem, gpa, 1);
}

static uint8_t status_at(struct fixture *f, uint64_t gpa)
{
	return *(uint8_t *)fg_ptr(&f->g, gpa);
}

/* Completes with `status` and checks what the guest sees. */
static void expect_completion(struct fixture *f, uint8_t status, uint64_t status_gpa,
			      uint32_t used_len)
{
	assert_ptr_equal(f->req.status, device_ptr(f, status_gpa));
	assert_int_equal(blk_request_complete(&f->req, status), used_len);
	assert_int_equal(status_at(f, status_gpa), status);
}

/* A bad chain with no usable status: returned with used length 0. */
static void expect_no_status(struct fixture *f, uint8_t parsed)
{
	assert_int_equal(parsed, VIRTIO_BLK_S_IOERR);
	assert_null(f->req.status);
	assert_non_null(f->req.error);
	assert_int_equal(blk_request_complete(&f->req, parsed), 0);
}

static void test_read(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 8);
	uint64_t data = fg_alloc(&f->g, 4096, 4096, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {data, 4096, W}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.type, VIRTIO_BLK_T_IN);
	assert_int_equal(f->req.sector, 8);
	assert_int_equal(f->req.num_sectors, 8);
	assert_int_equal(f->req.data_len, 4096);
	assert_int_equal(f->req.data_cnt, 1);
	assert_ptr_equal(f->req.data[0].iov_base, device_ptr(f, data));
	/* used length: all data plus the status byte */
	expect_completion(f, VIRTIO_BLK_S_OK, st, 4097);
}

static void test_failed_read_reports_only_the_status_byte(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t data = fg_alloc(&f->g, 512, 512, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {data, 512, W}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_OK);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_write_with_two_data_descriptors(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_OUT, 100);
	uint64_t d1 = fg_alloc(&f->g, 0x100, 512, 0);
	uint64_t d2 = fg_alloc(&f->g, 0x100, 512, 0);
	uint64_t st = fg_status(&f->g);
	memset(fg_ptr(&f->g, d1), 'a', 0x100);
	memset(fg_ptr(&f->g, d2), 'b', 0x100);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {d1, 0x100, 0}, {d2, 0x100, 0}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 4), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.type, VIRTIO_BLK_T_OUT);
	assert_int_equal(f->req.data_len, 0x200);
	assert_int_equal(f->req.num_sectors, 1);
	assert_int_equal(f->req.data_cnt, 2);
	uint8_t buf[0x200];
	blk_request_copy_from_guest(&f->req, buf);
	assert_int_equal(buf[0], 'a');
	assert_int_equal(buf[0x1ff], 'b');
	expect_completion(f, VIRTIO_BLK_S_OK, st, 1);
}

static void test_header_split_across_descriptors(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0x123);
	uint64_t data = fg_alloc(&f->g, 512, 512, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 5, 0}, {hdr + 5, 11, 0}, {data, 512, W}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 4), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.type, VIRTIO_BLK_T_IN);
	assert_int_equal(f->req.sector, 0x123);
	assert_int_equal(f->req.data_len, 512);
}

static void test_header_and_data_share_a_descriptor(void **state)
{
	struct fixture *f = *state;
	uint64_t buf = fg_alloc(&f->g, 16 + 512, 512, 0);
	struct virtio_blk_outhdr *h = fg_ptr(&f->g, buf);
	h->type = VIRTIO_BLK_T_OUT;
	h->sector = 3;
	memset(fg_ptr(&f->g, buf + 16), 'x', 512);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{buf, 16 + 512, 0}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 2), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.data_len, 512);
	assert_ptr_equal(f->req.data[0].iov_base, device_ptr(f, buf + 16));
}

static void test_data_and_status_share_a_descriptor(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t buf = fg_alloc(&f->g, 513, 512, 0);
	*(uint8_t *)fg_ptr(&f->g, buf + 512) = 0xff;
	struct fake_buf bufs[] = {{hdr, 16, 0}, {buf, 513, W}};
	assert_int_equal(parse(f, bufs, 2), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.data_len, 512);
	/* The status is the last byte of the last descriptor. */
	expect_completion(f, VIRTIO_BLK_S_OK, buf + 512, 513);
}

static void test_header_too_short(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 8, 0}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 2), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_header_writable(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_FLUSH, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, W}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 2), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_status_not_writable(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_FLUSH, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {st, 1, 0}};
	expect_no_status(f, parse(f, bufs, 2));
	assert_int_equal(status_at(f, st), 0xff);
}

static void test_status_zero_length(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_FLUSH, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {st, 0, W}};
	expect_no_status(f, parse(f, bufs, 2));
	/* A header alone has no status either. */
	struct fake_buf alone[] = {{hdr, 16, 0}};
	expect_no_status(f, parse(f, alone, 1));
}

static void test_status_outside_guest_memory(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_FLUSH, 0);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {FG_UNMAPPED, 1, W}};
	expect_no_status(f, parse(f, bufs, 2));
	/* addr + len wrapping around */
	struct fake_buf wrap[] = {{hdr, 16, 0}, {UINT64_MAX - 1, 4, W}};
	expect_no_status(f, parse(f, wrap, 2));
}

static void test_read_into_readable_buffer(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t data = fg_alloc(&f->g, 512, 512, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {data, 512, 0}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_write_from_writable_buffer(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_OUT, 0);
	uint64_t data = fg_alloc(&f->g, 512, 512, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {data, 512, W}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_readable_after_writable(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t d1 = fg_alloc(&f->g, 512, 512, 0);
	uint64_t d2 = fg_alloc(&f->g, 512, 512, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {d1, 512, W}, {d2, 512, 0}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 4), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_loop_has_no_status(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	fg_write_desc(&f->g, FG_DESC, 0, hdr, 16, VRING_DESC_F_NEXT, 1);
	fg_write_desc(&f->g, FG_DESC, 1, hdr, 16, VRING_DESC_F_NEXT, 0);
	expect_no_status(f, parse_head(f, 0));
}

static void test_next_out_of_range_has_no_status(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	fg_write_desc(&f->g, FG_DESC, 0, hdr, 16, VRING_DESC_F_NEXT, 0xffff);
	expect_no_status(f, parse_head(f, 0));
}

static void test_indirect_request(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 16);
	uint64_t data = fg_alloc(&f->g, 8192, 4096, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {
	    {hdr, 16, 0}, {data, 4096, W}, {data + 4096, 4096, W}, {st, 1, W}};
	uint16_t head = fg_indirect_chain(&f->g, FG_INDIRECT, bufs, 4);
	assert_int_equal(parse_head(f, head), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.data_len, 8192);
	assert_int_equal(f->req.data_cnt, 2);
	expect_completion(f, VIRTIO_BLK_S_OK, st, 8193);
}

static void test_bad_indirect_tables_have_no_status(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {st, 1, W}};
	uint16_t head = fg_indirect_chain(&f->g, FG_INDIRECT, bufs, 2);
	/* len 24: not a whole number of descriptors */
	fg_write_desc(&f->g, FG_DESC, head, FG_INDIRECT, 24, VRING_DESC_F_INDIRECT, 0);
	expect_no_status(f, parse_head(f, head));
	/* an indirect descriptor inside the indirect table */
	fg_write_desc(&f->g, FG_DESC, head, FG_INDIRECT, 32, VRING_DESC_F_INDIRECT, 0);
	fg_write_desc(&f->g, FG_INDIRECT, 1, FG_INDIRECT, 32, VRING_DESC_F_INDIRECT, 0);
	expect_no_status(f, parse_head(f, head));
}

static void test_data_outside_guest_memory(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {FG_MEM_SIZE - 256, 512, W}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
	struct fake_buf hdr_out[] = {{FG_UNMAPPED, 16, 0}, {st, 1, W}};
	assert_int_equal(parse(f, hdr_out, 2), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_buffer_spanning_two_regions(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_OUT, 0);
	uint64_t st = fg_status(&f->g);
	uint64_t data = FG_SPLIT - 1024;
	for (int i = 0; i < 2048; i++)
		*(uint8_t *)fg_ptr(&f->g, data + (uint64_t)i) = (uint8_t)(i / 8);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {data, 2048, 0}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.data_cnt, 2);
	assert_int_equal(f->req.data_len, 2048);
	uint8_t buf[2048];
	blk_request_copy_from_guest(&f->req, buf);
	for (int i = 0; i < 2048; i++)
		assert_int_equal(buf[i], (uint8_t)(i / 8));
}

static void test_zero_length_descriptors_are_skipped(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t data = fg_alloc(&f->g, 512, 512, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {
	    {hdr, 16, 0}, {0, 0, 0}, {data, 512, W}, {FG_UNMAPPED, 0, W}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 5), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.data_len, 512);
	assert_int_equal(f->req.data_cnt, 1);
}

static void test_sector_range_checks(void **state)
{
	struct fixture *f = *state;
	uint64_t data = fg_alloc(&f->g, 1024, 512, 0);
	uint64_t st = fg_status(&f->g);
	struct {
		uint64_t sector;
		uint8_t status;
	} cases[] = {
	    {CAPACITY - 2, VIRTIO_BLK_S_OK},	/* ends exactly at the end */
	    {CAPACITY - 1, VIRTIO_BLK_S_IOERR}, /* one sector past */
	    {CAPACITY, VIRTIO_BLK_S_IOERR},
	    {UINT64_MAX, VIRTIO_BLK_S_IOERR}, /* sector + count overflows */
	    {UINT64_MAX - 1, VIRTIO_BLK_S_IOERR},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, cases[i].sector);
		struct fake_buf bufs[] = {{hdr, 16, 0}, {data, 1024, W}, {st, 1, W}};
		assert_int_equal(parse(f, bufs, 3), cases[i].status);
	}
	/* A zero-length read at the very end is in range. */
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, CAPACITY);
	struct fake_buf empty[] = {{hdr, 16, 0}, {st, 1, W}};
	assert_int_equal(parse(f, empty, 2), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.data_len, 0);
}

static void test_length_not_multiple_of_512(void **state)
{
	struct fixture *f = *state;
	uint64_t data = fg_alloc(&f->g, 1024, 512, 0);
	uint64_t st = fg_status(&f->g);
	uint32_t types[] = {VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
	for (int i = 0; i < 2; i++) {
		uint64_t hdr = fg_header(&f->g, types[i], 0);
		struct fake_buf bufs[] = {{hdr, 16, 0}, {data, 513, i == 0 ? W : 0}, {st, 1, W}};
		assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_IOERR);
		struct fake_buf one[] = {{hdr, 16, 0}, {data, 1, i == 0 ? W : 0}, {st, 1, W}};
		assert_int_equal(parse(f, one, 3), VIRTIO_BLK_S_IOERR);
	}
}

static void test_request_size_cap(void **state)
{
	struct fixture *f = *state;
	f->lim.max_bytes = 4096;
	uint64_t data = fg_alloc(&f->g, 8192, 4096, 0);
	uint64_t st = fg_status(&f->g);
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	struct fake_buf ok[] = {{hdr, 16, 0}, {data, 4096, W}, {st, 1, W}};
	assert_int_equal(parse(f, ok, 3), VIRTIO_BLK_S_OK);
	struct fake_buf big[] = {{hdr, 16, 0}, {data, 4608, W}, {st, 1, W}};
	assert_int_equal(parse(f, big, 3), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
	/* Descriptor lengths adding up past 4 GiB do not wrap. */
	struct fake_buf huge[] = {
	    {hdr, 16, 0}, {data, 0xffffffffu, W}, {data, 0xffffffffu, W}, {st, 1, W}};
	assert_int_equal(parse(f, huge, 4), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_too_many_segments(void **state)
{
	struct fixture *f = *state;
	/* An indirect table of BLK_REQUEST_MAX_IOV + 1 data descriptors. */
	enum { DATA = BLK_REQUEST_MAX_IOV + 1 };
	static struct fake_buf bufs[DATA + 2];
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	uint64_t data = fg_alloc(&f->g, 512, 512, 0);
	uint64_t st = fg_status(&f->g);
	bufs[0] = (struct fake_buf){hdr, 16, 0};
	for (int i = 1; i <= DATA; i++)
		bufs[i] = (struct fake_buf){data, 512, W};
	bufs[DATA + 1] = (struct fake_buf){st, 1, W};
	uint16_t head = fg_indirect_chain(&f->g, FG_INDIRECT, bufs, DATA + 2);
	assert_int_equal(parse_head(f, head), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
	/* Exactly BLK_REQUEST_MAX_IOV buffers (header, data, status) fit. */
	bufs[BLK_REQUEST_MAX_IOV - 1] = (struct fake_buf){st, 1, W};
	head = fg_indirect_chain(&f->g, FG_INDIRECT, bufs, BLK_REQUEST_MAX_IOV);
	assert_int_equal(parse_head(f, head), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.data_len, 512u * (BLK_REQUEST_MAX_IOV - 2));
	assert_int_equal(f->req.iov_cap, BLK_REQUEST_MAX_IOV);
}

static void test_flush(void **state)
{
	struct fixture *f = *state;
	uint64_t st = fg_status(&f->g);
	/* Any sector is accepted: the field means nothing for a flush. */
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_FLUSH, 7);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 2), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.type, VIRTIO_BLK_T_FLUSH);
	expect_completion(f, VIRTIO_BLK_S_OK, st, 1);
	/* Data buffers are ignored. */
	uint64_t data = fg_alloc(&f->g, 512, 512, 0);
	struct fake_buf with_data[] = {{hdr, 16, 0}, {data, 512, W}, {st, 1, W}};
	assert_int_equal(parse(f, with_data, 3), VIRTIO_BLK_S_OK);
	expect_completion(f, VIRTIO_BLK_S_OK, st, 1);
}

static void test_get_id(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_GET_ID, 0);
	uint64_t id = fg_alloc(&f->g, 32, 16, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {id, 32, W}, {st, 1, W}};

	/* A 20-byte id fills the field with no terminator. */
	memset(fg_ptr(&f->g, id), 0xee, 32);
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_request_get_id(&f->req, "abcdefghijklmnopqrst"), VIRTIO_BLK_S_OK);
	expect_completion(f, VIRTIO_BLK_S_OK, st, 21);
	assert_memory_equal(fg_ptr(&f->g, id), "abcdefghijklmnopqrst", 20);
	assert_int_equal(*(uint8_t *)fg_ptr(&f->g, id + 20), 0xee); /* untouched */

	/* A shorter one is zero padded to 20 bytes. */
	memset(fg_ptr(&f->g, id), 0xee, 32);
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_request_get_id(&f->req, "ubiblk"), VIRTIO_BLK_S_OK);
	static const uint8_t padded[20] = "ubiblk";
	assert_memory_equal(fg_ptr(&f->g, id), padded, 20);

	/* Split over two buffers. */
	struct fake_buf split[] = {{hdr, 16, 0}, {id, 7, W}, {id + 16, 13, W}, {st, 1, W}};
	assert_int_equal(parse(f, split, 4), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_request_get_id(&f->req, "0123456789ABCDEFGHIJ"), VIRTIO_BLK_S_OK);
	assert_memory_equal(fg_ptr(&f->g, id), "0123456", 7);
	assert_memory_equal(fg_ptr(&f->g, id + 16), "789ABCDEFGHIJ", 13);
}

static void test_get_id_without_room(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_GET_ID, 0);
	uint64_t id = fg_alloc(&f->g, 4, 4, 0);
	uint64_t st = fg_status(&f->g);
	memset(fg_ptr(&f->g, id), 0xee, 4);
	struct fake_buf small[] = {{hdr, 16, 0}, {id, 4, W}, {st, 1, W}};
	assert_int_equal(parse(f, small, 3), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_request_get_id(&f->req, "ubiblk"), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
	assert_memory_equal(fg_ptr(&f->g, id), "\xee\xee\xee\xee", 4);

	/* No data descriptor at all: IOERR, not a crash. */
	struct fake_buf none[] = {{hdr, 16, 0}, {st, 1, W}};
	assert_int_equal(parse(f, none, 2), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_request_get_id(&f->req, "ubiblk"), VIRTIO_BLK_S_IOERR);
	expect_completion(f, VIRTIO_BLK_S_IOERR, st, 1);
}

static void test_unknown_types_are_unsupported(void **state)
{
	struct fixture *f = *state;
	uint64_t st = fg_status(&f->g);
	uint32_t types[] = {2, 0xdead, VIRTIO_BLK_T_SECURE_ERASE, 10, VIRTIO_BLK_T_BARRIER};
	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		uint64_t hdr = fg_header(&f->g, types[i], 0);
		struct fake_buf bufs[] = {{hdr, 16, 0}, {st, 1, W}};
		assert_int_equal(parse(f, bufs, 2), VIRTIO_BLK_S_UNSUPP);
		expect_completion(f, VIRTIO_BLK_S_UNSUPP, st, 1);
	}
}

static uint8_t parse_segments(struct fixture *f, uint32_t type,
			      const struct virtio_blk_discard_write_zeroes *segs, uint32_t len)
{
	uint64_t hdr = fg_header(&f->g, type, 0);
	uint64_t data = fg_alloc(&f->g, len ? len : 1, 16, 0);
	if (len)
		memcpy(fg_ptr(&f->g, data), segs, len);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {data, len, 0}, {st, 1, W}};
	return parse(f, bufs, 3);
}

static void test_discard_and_write_zeroes(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_discard_write_zeroes seg = {.sector = 64, .num_sectors = 128, .flags = 0};
	assert_int_equal(parse_segments(f, VIRTIO_BLK_T_DISCARD, &seg, 16), VIRTIO_BLK_S_OK);
	assert_int_equal(f->req.type, VIRTIO_BLK_T_DISCARD);
	assert_int_equal(f->req.sector, 64);
	assert_int_equal(f->req.num_sectors, 128);

	seg.flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	assert_int_equal(parse_segments(f, VIRTIO_BLK_T_WRITE_ZEROES, &seg, 16), VIRTIO_BLK_S_OK);
	assert_true(f->req.unmap);
	seg.flags = 0;
	assert_int_equal(parse_segments(f, VIRTIO_BLK_T_WRITE_ZEROES, &seg, 16), VIRTIO_BLK_S_OK);
	assert_false(f->req.unmap);
	/* The whole device in one segment is in range. */
	seg = (struct virtio_blk_discard_write_zeroes){.sector = 0, .num_sectors = CAPACITY};
	assert_int_equal(parse_segments(f, VIRTIO_BLK_T_DISCARD, &seg, 16), VIRTIO_BLK_S_OK);
}

static void test_bad_discard_segments(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_discard_write_zeroes two[2] = {{.sector = 0, .num_sectors = 8},
							 {.sector = 8, .num_sectors = 8}};
	struct virtio_blk_discard_write_zeroes seg = {.sector = 0, .num_sectors = 8};
	uint32_t types[] = {VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES};
	for (int i = 0; i < 2; i++) {
		uint32_t t = types[i];
		/* more segments than the advertised VHOST_BLK_MAX_DISCARD_SEG */
		assert_int_equal(parse_segments(f, t, two, 32), VIRTIO_BLK_S_UNSUPP);
		/* no segment, or a partial one */
		assert_int_equal(parse_segments(f, t, &seg, 0), VIRTIO_BLK_S_IOERR);
		assert_int_equal(parse_segments(f, t, &seg, 8), VIRTIO_BLK_S_IOERR);
		/* unknown flag bits */
		seg.flags = 2;
		assert_int_equal(parse_segments(f, t, &seg, 16), VIRTIO_BLK_S_UNSUPP);
		seg.flags = 0;
		/* past the end, wrapping, or larger than advertised */
		seg.sector = CAPACITY - 4;
		assert_int_equal(parse_segments(f, t, &seg, 16), VIRTIO_BLK_S_IOERR);
		seg.sector = UINT64_MAX - 2;
		assert_int_equal(parse_segments(f, t, &seg, 16), VIRTIO_BLK_S_IOERR);
		seg.sector = 0;
		seg.num_sectors = VHOST_BLK_MAX_DISCARD_SECTORS + 1;
		f->lim.capacity = UINT64_MAX;
		assert_int_equal(parse_segments(f, t, &seg, 16), VIRTIO_BLK_S_IOERR);
		seg.num_sectors = VHOST_BLK_MAX_DISCARD_SECTORS;
		assert_int_equal(parse_segments(f, t, &seg, 16), VIRTIO_BLK_S_OK);
		f->lim.capacity = CAPACITY;
		seg.num_sectors = 8;
	}
	/* virtio 1.2: the unmap flag is for write-zeroes only. */
	seg.flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	assert_int_equal(parse_segments(f, VIRTIO_BLK_T_DISCARD, &seg, 16), VIRTIO_BLK_S_UNSUPP);
	/* The segment must be device-readable. */
	seg.flags = 0;
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_DISCARD, 0);
	uint64_t data = fg_alloc(&f->g, 16, 16, 0);
	memcpy(fg_ptr(&f->g, data), &seg, 16);
	uint64_t st = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {data, 16, W}, {st, 1, W}};
	assert_int_equal(parse(f, bufs, 3), VIRTIO_BLK_S_IOERR);
}

static void test_read_only_device(void **state)
{
	struct fixture *f = *state;
	f->lim.read_only = true;
	uint64_t data = fg_alloc(&f->g, 512, 512, 0);
	uint64_t st = fg_status(&f->g);
	uint64_t wr = fg_header(&f->g, VIRTIO_BLK_T_OUT, 0);
	struct fake_buf write[] = {{wr, 16, 0}, {data, 512, 0}, {st, 1, W}};
	assert_int_equal(parse(f, write, 3), VIRTIO_BLK_S_IOERR);
	uint64_t rd = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	struct fake_buf read[] = {{rd, 16, 0}, {data, 512, W}, {st, 1, W}};
	assert_int_equal(parse(f, read, 3), VIRTIO_BLK_S_OK);
	struct virtio_blk_discard_write_zeroes seg = {.sector = 0, .num_sectors = 8};
	assert_int_equal(parse_segments(f, VIRTIO_BLK_T_WRITE_ZEROES, &seg, 16),
			 VIRTIO_BLK_S_IOERR);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_read),
	    T(test_failed_read_reports_only_the_status_byte),
	    T(test_write_with_two_data_descriptors),
	    T(test_header_split_across_descriptors),
	    T(test_header_and_data_share_a_descriptor),
	    T(test_data_and_status_share_a_descriptor),
	    T(test_header_too_short),
	    T(test_header_writable),
	    T(test_status_not_writable),
	    T(test_status_zero_length),
	    T(test_status_outside_guest_memory),
	    T(test_read_into_readable_buffer),
	    T(test_write_from_writable_buffer),
	    T(test_readable_after_writable),
	    T(test_loop_has_no_status),
	    T(test_next_out_of_range_has_no_status),
	    T(test_indirect_request),
	    T(test_bad_indirect_tables_have_no_status),
	    T(test_data_outside_guest_memory),
	    T(test_buffer_spanning_two_regions),
	    T(test_zero_length_descriptors_are_skipped),
	    T(test_sector_range_checks),
	    T(test_length_not_multiple_of_512),
	    T(test_request_size_cap),
	    T(test_too_many_segments),
	    T(test_flush),
	    T(test_get_id),
	    T(test_get_id_without_room),
	    T(test_unknown_types_are_unsupported),
	    T(test_discard_and_write_zeroes),
	    T(test_bad_discard_segments),
	    T(test_read_only_device),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The vhost-user request handlers, driven through a socketpair the way a
 * front end drives them: features, REPLY_ACK, config space, memory tables,
 * vring setup, and which mistakes end the connection. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bdev/bdev.h"
#include "common/common.h"
#include "front_end.h"
#include "vhost/control.h"

#define NUM_QUEUES    2
#define QUEUE_SIZE    64
#define DISK_SECTORS  16384 /* 8 MiB */
#define RAM_SIZE      (1u << 20)
#define RAM_GPA	      0x40000000ull
#define RAM_USER_ADDR 0x7f0000000000ull

#define F_PROTOCOL_FEATURES (1ull << VHOST_USER_F_PROTOCOL_FEATURES)
#define F_VERSION_1	    (1ull << 32)
#define F_EVENT_IDX	    (1ull << 29)

struct fixture {
	struct vhost_blk_options opts;
	struct bdev *dev;
	struct vhost_control *ctl;
	int front;
	int back;
	struct error err;
};

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof(f));
	f.opts = (struct vhost_blk_options){
	    .socket_path = "unused",
	    .num_queues = NUM_QUEUES,
	    .queue_size = QUEUE_SIZE,
	    .seg_size_max = 65536,
	    .seg_count_max = 4,
	    .poll_queue_timeout_us = 100,
	    .write_through = false,
	    .device_id = "ubiblk-test",
	};
	if (bdev_open_null(DISK_SECTORS, &f.dev) < 0)
		return -1;
	if (vhost_control_create(&f.opts, f.dev, -1, &f.ctl) < 0)
		return -1;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	f.front = sv[0];
	f.back = sv[1];
	*state = &f;
	return 0;
}

/* The same with threadless queue workers (the fuzz target's set-up). */
static int setup_threadless(void **state)
{
	if (setup(state) != 0)
		return -1;
	struct fixture *f = *state;
	vhost_control_destroy(f->ctl);
	return vhost_control_create_threadless(&f->opts, f->dev, &f->ctl) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	vhost_control_destroy(f->ctl);
	bdev_close(f->dev);
	close(f->front);
	close(f->back);
	return 0;
}

/* Lets the control plane handle the next message. */
static int handle(struct fixture *f)
{
	error_clear(&f->err);
	return vhost_control_process_message(f->ctl, f->back, &f->err);
}

static void expect_ok(struct fixture *f)
{
	int ret = handle(f);
	if (ret != 0)
		fail_msg("unexpected failure %d: %s", ret, f->err.text);
}

/* The request must end the connection, with a reason naming `fragment`. */
static void expect_end(struct fixture *f, const char *fragment)
{
	int ret = handle(f);
	assert_true(ret < 0);
	if (!strstr(f->err.text, fragment))
		fail_msg("error \"%s\" does not mention \"%s\"", f->err.text, fragment);
}

static uint64_t get_u64(struct fixture *f, uint32_t request)
{
	fe_request(f->front, request, NULL, 0);
	expect_ok(f);
	return fe_reply_u64(f->front, request);
}

/* The handshake QEMU does before it touches memory or rings. */
static void negotiate(struct fixture *f, uint64_t features)
{
	fe_request(f->front, VHOST_USER_SET_OWNER, NULL, 0);
	expect_ok(f);
	assert_int_equal(get_u64(f, VHOST_USER_GET_FEATURES), VHOST_BLK_FEATURES);
	assert_int_equal(get_u64(f, VHOST_USER_GET_PROTOCOL_FEATURES), VHOST_BLK_PROTOCOL_FEATURES);
	fe_request_u64(f->front, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_BLK_PROTOCOL_FEATURES);
	expect_ok(f);
	fe_request_u64(f->front, VHOST_USER_SET_FEATURES, features);
	expect_ok(f);
}

static struct vhost_user_mem_region ram_region(void)
{
	return (struct vhost_user_mem_region){
	    .guest_phys_addr = RAM_GPA,
	    .memory_size = RAM_SIZE,
	    .userspace_addr = RAM_USER_ADDR,
	    .mmap_offset = 0,
	};
}

static void add_region(struct fixture *f, struct vhost_user_mem_region region, int fd)
{
	struct vhost_user_single_mem_region msg = {.region = region};
	fe_send(f->front, VHOST_USER_ADD_MEM_REG, VHOST_USER_VERSION, &msg, sizeof(msg), &fd, 1);
}

/* ---- features, ownership, REPLY_ACK ---- */

static void test_feature_values(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(VHOST_BLK_FEATURES, 0x170007E46ull);
	assert_int_equal(VHOST_BLK_PROTOCOL_FEATURES, 0x8209ull);
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES | F_EVENT_IDX);
	assert_int_equal(get_u64(f, VHOST_USER_GET_QUEUE_NUM), NUM_QUEUES);
	assert_int_equal(get_u64(f, VHOST_USER_GET_MAX_MEM_SLOTS), VHOST_USER_MAX_MEM_SLOTS);
	assert_true(fe_nothing_pending(f->front));
}

static void test_unoffered_feature_ends_connection(void **state)
{
	struct fixture *f = *state;
	fe_request_u64(f->front, VHOST_USER_SET_FEATURES, F_VERSION_1 | (1ull << 27));
	expect_end(f, "not offered");
}

static void test_unoffered_protocol_feature_ends_connection(void **state)
{
	struct fixture *f = *state;
	/* INFLIGHT_SHMFD is not offered. */
	fe_request_u64(f->front, VHOST_USER_SET_PROTOCOL_FEATURES,
		       VHOST_BLK_PROTOCOL_FEATURES | (1ull << 12));
	expect_end(f, "not offered");
}

static void test_queue_num_needs_mq(void **state)
{
	struct fixture *f = *state;
	fe_request(f->front, VHOST_USER_GET_QUEUE_NUM, NULL, 0);
	expect_end(f, "MQ");
	assert_true(fe_nothing_pending(f->front));
}

static void test_reply_ack(void **state)
{
	struct fixture *f = *state;
	/* Before REPLY_ACK is negotiated NEED_REPLY is ignored. */
	fe_send(f->front, VHOST_USER_SET_OWNER, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_FLAG,
		NULL, 0, NULL, 0);
	expect_ok(f);
	assert_true(fe_nothing_pending(f->front));

	fe_request_u64(f->front, VHOST_USER_SET_PROTOCOL_FEATURES,
		       1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK);
	expect_ok(f);
	assert_true(fe_nothing_pending(f->front));

	/* Success: 0, and nothing for a request without NEED_REPLY. */
	uint64_t features = F_VERSION_1 | F_PROTOCOL_FEATURES;
	fe_send(f->front, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_FLAG,
		&features, sizeof(features), NULL, 0);
	expect_ok(f);
	assert_int_equal(fe_reply_u64(f->front, VHOST_USER_SET_FEATURES), 0);
	fe_request_u64(f->front, VHOST_USER_SET_FEATURES, features);
	expect_ok(f);
	assert_true(fe_nothing_pending(f->front));

	/* A request with its own reply gets only that reply. */
	fe_send(f->front, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_FLAG,
		NULL, 0, NULL, 0);
	expect_ok(f);
	assert_int_equal(fe_reply_u64(f->front, VHOST_USER_GET_FEATURES), VHOST_BLK_FEATURES);
	assert_true(fe_nothing_pending(f->front));

	/* Failure: 1, then the connection ends (the session is already owned). */
	fe_send(f->front, VHOST_USER_SET_OWNER, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_FLAG,
		NULL, 0, NULL, 0);
	expect_end(f, "owner");
	assert_int_equal(fe_reply_u64(f->front, VHOST_USER_SET_OWNER), 1);
}

static void test_reset_owner_allows_new_owner(void **state)
{
	struct fixture *f = *state;
	fe_request(f->front, VHOST_USER_SET_OWNER, NULL, 0);
	expect_ok(f);
	fe_request(f->front, VHOST_USER_RESET_OWNER, NULL, 0);
	expect_ok(f);
	fe_request(f->front, VHOST_USER_SET_OWNER, NULL, 0);
	expect_ok(f);
	/* Protocol features were forgotten too. */
	fe_request(f->front, VHOST_USER_GET_MAX_MEM_SLOTS, NULL, 0);
	expect_end(f, "CONFIGURE_MEM_SLOTS");
}

static void test_unsupported_requests_end_connection(void **state)
{
	struct fixture *f = *state;
	fe_request(f->front, 99, NULL, 0);
	expect_end(f, "not supported");
	uint64_t zero = 0;
	int fd = eventfd(0, EFD_CLOEXEC);
	int before = fe_open_fd_count();
	fe_send(f->front, VHOST_USER_SET_LOG_BASE, VHOST_USER_VERSION, &zero, sizeof(zero), &fd, 1);
	close(fd);
	expect_end(f, "not supported");
	assert_int_equal(fe_open_fd_count(), before - 1);
}

static void test_device_state_requests(void **state)
{
	struct fixture *f = *state;
	struct vhost_user_vring_state transfer = {0, 0};
	int fd = eventfd(0, EFD_CLOEXEC);
	fe_send(f->front, VHOST_USER_SET_DEVICE_STATE_FD, VHOST_USER_VERSION, &transfer,
		sizeof(transfer), &fd, 1);
	close(fd);
	expect_ok(f);
	assert_int_equal(fe_reply_u64(f->front, VHOST_USER_SET_DEVICE_STATE_FD), 0x101);
	assert_int_equal(get_u64(f, VHOST_USER_CHECK_DEVICE_STATE), 1);
}

/* ---- config space ---- */

static void get_config(struct fixture *f, uint32_t offset, uint32_t size, uint8_t *out)
{
	uint8_t request[sizeof(struct vhost_user_config_header) + 128] = {0};
	struct vhost_user_config_header hdr = {.offset = offset, .size = size, .flags = 0};
	memcpy(request, &hdr, sizeof(hdr));
	fe_request(f->front, VHOST_USER_GET_CONFIG, request, (uint32_t)sizeof(hdr) + size);
	expect_ok(f);
	uint8_t reply[sizeof(request)];
	uint32_t got = fe_reply(f->front, VHOST_USER_GET_CONFIG, reply, sizeof(reply));
	assert_int_equal(got, sizeof(hdr) + size);
	struct vhost_user_config_header reply_hdr;
	memcpy(&reply_hdr, reply, sizeof(reply_hdr));
	assert_int_equal(reply_hdr.offset, offset);
	assert_int_equal(reply_hdr.size, size);
	memcpy(out, reply + sizeof(hdr), size);
}

static void test_get_config_sizes(void **state)
{
	struct fixture *f = *state;
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES);
	struct virtio_blk_config_space expected;
	vhost_blk_config_space_fill(&f->opts, DISK_SECTORS, &expected);
	const uint32_t sizes[] = {36, 57, 60, 80};
	const uint32_t offsets[] = {0, 0x100};
	for (size_t o = 0; o < 2; o++) {
		for (size_t s = 0; s < 4; s++) {
			uint8_t data[128];
			memset(data, 0xaa, sizeof(data));
			get_config(f, offsets[o], sizes[s], data);
			uint64_t capacity;
			memcpy(&capacity, data, sizeof(capacity));
			assert_int_equal(capacity, DISK_SECTORS);
			size_t config_bytes = sizes[s] < 60 ? sizes[s] : 60;
			assert_memory_equal(data, &expected, config_bytes);
			for (size_t i = 60; i < sizes[s]; i++)
				assert_int_equal(data[i], 0);
		}
	}
	assert_true(fe_nothing_pending(f->front));
}

static void test_config_space_values(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_config_space c;
	vhost_blk_config_space_fill(&f->opts, 12345, &c);
	assert_int_equal(c.capacity, 12345);
	assert_int_equal(c.size_max, 65536);
	assert_int_equal(c.seg_max, 4);
	assert_int_equal(c.blk_size, 512);
	assert_int_equal(c.min_io_size, 1);
	assert_int_equal(c.opt_io_size, 1);
	assert_int_equal(c.writeback, 1);
	assert_int_equal(c.num_queues, NUM_QUEUES);
	assert_int_equal(c.max_discard_sectors, VHOST_BLK_MAX_DISCARD_SECTORS);
	assert_int_equal(c.max_discard_seg, VHOST_BLK_MAX_DISCARD_SEG);
	assert_int_equal(c.discard_sector_alignment, 8);
	assert_int_equal(c.max_write_zeroes_sectors, VHOST_BLK_MAX_DISCARD_SECTORS);
	assert_int_equal(c.max_write_zeroes_seg, 1);
	assert_int_equal(c.write_zeroes_may_unmap, 1);
	assert_int_equal(c.cylinders, 0);
	assert_int_equal(c.physical_block_exp, 0);

	struct vhost_blk_options wt = f->opts;
	wt.write_through = true;
	vhost_blk_config_space_fill(&wt, 1, &c);
	assert_int_equal(c.writeback, 0);
}

static void test_get_config_needs_config_feature(void **state)
{
	struct fixture *f = *state;
	uint8_t request[12 + 60] = {0};
	struct vhost_user_config_header hdr = {.offset = 0, .size = 60};
	memcpy(request, &hdr, sizeof(hdr));
	fe_request(f->front, VHOST_USER_GET_CONFIG, request, sizeof(request));
	expect_end(f, "CONFIG");
	assert_true(fe_nothing_pending(f->front));
}

static void test_bad_config_requests(void **state)
{
	struct fixture *f = *state;
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES);
	uint8_t request[12 + 60] = {0};
	struct vhost_user_config_header hdr = {.offset = 0, .size = 0};
	memcpy(request, &hdr, sizeof(hdr));
	fe_request(f->front, VHOST_USER_GET_CONFIG, request, 12);
	expect_end(f, "range");

	hdr = (struct vhost_user_config_header){.offset = 0, .size = 60};
	memcpy(request, &hdr, sizeof(hdr));
	fe_request(f->front, VHOST_USER_GET_CONFIG, request, 12 + 40);
	expect_end(f, "data bytes");

	hdr = (struct vhost_user_config_header){.offset = 0xfffffff0u, .size = 60};
	memcpy(request, &hdr, sizeof(hdr));
	fe_request(f->front, VHOST_USER_GET_CONFIG, request, sizeof(request));
	expect_end(f, "range");

	hdr = (struct vhost_user_config_header){.offset = 0, .size = 60, .flags = 4};
	memcpy(request, &hdr, sizeof(hdr));
	fe_request(f->front, VHOST_USER_SET_CONFIG, request, sizeof(request));
	expect_end(f, "flags");

	fe_request(f->front, VHOST_USER_GET_CONFIG, request, 8);
	expect_end(f, "too short");
	assert_true(fe_nothing_pending(f->front));
}

static void test_set_config_is_ignored(void **state)
{
	struct fixture *f = *state;
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES);
	uint8_t request[12 + 1] = {0};
	struct vhost_user_config_header hdr = {.offset = 32, .size = 1, .flags = 1};
	memcpy(request, &hdr, sizeof(hdr));
	request[12] = 0; /* the guest turns the write cache off */
	fe_request(f->front, VHOST_USER_SET_CONFIG, request, sizeof(request));
	expect_ok(f);
	uint8_t data[60];
	get_config(f, 0, 60, data);
	assert_int_equal(data[offsetof(struct virtio_blk_config_space, writeback)], 1);
}

/* ---- memory ---- */

static void send_mem_table(struct fixture *f, const struct vhost_user_mem_region *regions,
			   uint32_t count, const int *fds, unsigned int fd_count)
{
	struct vhost_user_mem_table table = {.nregions = count};
	memcpy(table.regions, regions, count * sizeof(*regions));
	fe_send(f->front, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &table,
		(uint32_t)(8 + count * sizeof(*regions)), fds, fd_count);
}

static void test_mem_table_closes_fds(void **state)
{
	struct fixture *f = *state;
	int before = fe_open_fd_count();
	int fd = fe_memfd(RAM_SIZE, NULL);
	struct vhost_user_mem_region r = ram_region();
	send_mem_table(f, &r, 1, &fd, 1);
	close(fd);
	expect_ok(f);
	/* The mapping keeps the memory; the received descriptor is closed. */
	assert_int_equal(fe_open_fd_count(), before);

	/* A second table replaces the first. */
	fd = fe_memfd(RAM_SIZE, NULL);
	r.guest_phys_addr = 0;
	send_mem_table(f, &r, 1, &fd, 1);
	close(fd);
	expect_ok(f);
	assert_int_equal(fe_open_fd_count(), before);
}

static void test_mem_table_overlap(void **state)
{
	struct fixture *f = *state;
	int before = fe_open_fd_count();
	int fds[2] = {fe_memfd(RAM_SIZE, NULL), fe_memfd(RAM_SIZE, NULL)};
	struct vhost_user_mem_region r[2] = {ram_region(), ram_region()};
	r[1].guest_phys_addr += RAM_SIZE / 2;
	r[1].userspace_addr += 2 * RAM_SIZE;
	send_mem_table(f, r, 2, fds, 2);
	close(fds[0]);
	close(fds[1]);
	expect_end(f, "region 1");
	assert_int_equal(fe_open_fd_count(), before);
}

static void test_mem_table_overflow(void **state)
{
	struct fixture *f = *state;
	int fd = fe_memfd(RAM_SIZE, NULL);
	struct vhost_user_mem_region r = ram_region();
	r.guest_phys_addr = UINT64_MAX - RAM_SIZE / 2;
	send_mem_table(f, &r, 1, &fd, 1);
	close(fd);
	expect_end(f, "region 0");
}

static void test_mem_table_zero_size(void **state)
{
	struct fixture *f = *state;
	int fd = fe_memfd(RAM_SIZE, NULL);
	struct vhost_user_mem_region r = ram_region();
	r.memory_size = 0;
	send_mem_table(f, &r, 1, &fd, 1);
	close(fd);
	expect_end(f, "region 0");
}

static void test_mem_table_shape(void **state)
{
	struct fixture *f = *state;
	int before = fe_open_fd_count();
	struct vhost_user_mem_region r = ram_region();
	int fd = fe_memfd(RAM_SIZE, NULL);

	send_mem_table(f, &r, 0, NULL, 0);
	expect_end(f, "0 regions");

	/* One region announced, no descriptor. */
	send_mem_table(f, &r, 1, NULL, 0);
	expect_end(f, "0 file descriptors");

	/* Two descriptors for one region. */
	int two[2] = {fd, fd};
	send_mem_table(f, &r, 1, two, 2);
	expect_end(f, "2 file descriptors");

	/* nregions disagrees with the payload size. */
	struct vhost_user_mem_table table = {.nregions = 2};
	table.regions[0] = r;
	fe_send(f->front, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &table, 8 + 32, &fd, 1);
	expect_end(f, "payload of 40 bytes");

	/* Non-zero padding. */
	table.nregions = 1;
	table.padding = 1;
	fe_send(f->front, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &table, 8 + 32, &fd, 1);
	expect_end(f, "padding");

	close(fd);
	assert_int_equal(fe_open_fd_count(), before);
}

static void test_add_and_remove_regions(void **state)
{
	struct fixture *f = *state;
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES);
	int before = fe_open_fd_count();
	int fd = fe_memfd(2 * RAM_SIZE, NULL);
	struct vhost_user_mem_region low = ram_region();
	struct vhost_user_mem_region high = ram_region();
	high.guest_phys_addr += RAM_SIZE;
	high.userspace_addr += RAM_SIZE;
	high.mmap_offset = RAM_SIZE;
	add_region(f, low, fd);
	expect_ok(f);
	add_region(f, high, fd);
	expect_ok(f);
	close(fd);
	assert_int_equal(fe_open_fd_count(), before);

	struct vhost_user_single_mem_region rem = {.region = low};
	fe_request(f->front, VHOST_USER_REM_MEM_REG, &rem, sizeof(rem));
	expect_ok(f);
	/* Removing it again: no such region. */
	fe_request(f->front, VHOST_USER_REM_MEM_REG, &rem, sizeof(rem));
	expect_end(f, "does not match");
}

static void test_add_overlapping_region(void **state)
{
	struct fixture *f = *state;
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES);
	int fd = fe_memfd(RAM_SIZE, NULL);
	add_region(f, ram_region(), fd);
	expect_ok(f);
	struct vhost_user_mem_region overlap = ram_region();
	overlap.guest_phys_addr += 4096;
	overlap.memory_size = 4096;
	add_region(f, overlap, fd);
	expect_end(f, "overlaps");
	close(fd);
}

static void test_add_region_needs_one_fd(void **state)
{
	struct fixture *f = *state;
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES);
	struct vhost_user_single_mem_region msg = {.region = ram_region()};
	fe_request(f->front, VHOST_USER_ADD_MEM_REG, &msg, sizeof(msg));
	expect_end(f, "expected 1");
}

static void test_add_region_needs_mem_slots_feature(void **state)
{
	struct fixture *f = *state;
	int fd = fe_memfd(RAM_SIZE, NULL);
	add_region(f, ram_region(), fd);
	close(fd);
	expect_end(f, "CONFIGURE_MEM_SLOTS");
}

/* ---- vrings ---- */

static void test_vring_index_out_of_range(void **state)
{
	struct fixture *f = *state;
	const uint32_t requests[] = {VHOST_USER_SET_VRING_NUM, VHOST_USER_SET_VRING_BASE,
				     VHOST_USER_GET_VRING_BASE};
	for (size_t i = 0; i < ARRAY_SIZE(requests); i++) {
		fe_request_state(f->front, requests[i], NUM_QUEUES, 16);
		expect_end(f, "out of range");
	}
	int fd = eventfd(0, EFD_CLOEXEC);
	int before = fe_open_fd_count();
	uint64_t index = NUM_QUEUES;
	fe_send(f->front, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, &index, sizeof(index), &fd,
		1);
	expect_end(f, "out of range");
	assert_int_equal(fe_open_fd_count(), before);
	close(fd);

	struct vhost_user_vring_addr addr = {.index = 200};
	fe_request(f->front, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr));
	expect_end(f, "out of range");
	assert_true(fe_nothing_pending(f->front));
}

static void test_vring_num_limits(void **state)
{
	struct fixture *f = *state;
	fe_request_state(f->front, VHOST_USER_SET_VRING_NUM, 0, 0);
	expect_end(f, "size 0 is not a power of two");
	fe_request_state(f->front, VHOST_USER_SET_VRING_NUM, 0, 48);
	expect_end(f, "size 48 is not a power of two");
	/* A power of two longer than the config allows: the reason says so
	 * and names both settings that fix it. */
	fe_request_state(f->front, VHOST_USER_SET_VRING_NUM, 0, QUEUE_SIZE * 2);
	expect_end(f, "SET_VRING_NUM: queue 0: size 128 exceeds the config's queue_size (64)");
	assert_null(strstr(f->err.text, "power of two"));
	assert_non_null(strstr(f->err.text, "set queue_size to 128 or more in the config"));
	assert_non_null(strstr(f->err.text, "queue-size=64"));
	assert_non_null(strstr(f->err.text, "vhost-user-blk-pci"));
	fe_request_state(f->front, VHOST_USER_SET_VRING_NUM, 1, QUEUE_SIZE);
	expect_ok(f);
}

static void test_vring_fd_rules(void **state)
{
	struct fixture *f = *state;
	int fd = eventfd(0, EFD_CLOEXEC);
	int before = fe_open_fd_count();
	/* "No fd" bit with an fd. */
	uint64_t value = VHOST_USER_VRING_NOFD_MASK;
	fe_send(f->front, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, &value, sizeof(value), &fd,
		1);
	expect_end(f, "no-fd bit set");
	/* An fd announced but missing. */
	fe_request_u64(f->front, VHOST_USER_SET_VRING_KICK, 0);
	expect_end(f, "no-fd bit clear");
	/* Unknown bits. */
	fe_request_u64(f->front, VHOST_USER_SET_VRING_ERR, 1ull << 20);
	expect_end(f, "unknown bits");
	assert_int_equal(fe_open_fd_count(), before);
	/* The no-fd form is accepted; an ERR fd is accepted and closed. */
	fe_request_u64(f->front, VHOST_USER_SET_VRING_CALL, VHOST_USER_VRING_NOFD_MASK | 1);
	expect_ok(f);
	value = 1;
	fe_send(f->front, VHOST_USER_SET_VRING_ERR, VHOST_USER_VERSION, &value, sizeof(value), &fd,
		1);
	expect_ok(f);
	assert_int_equal(fe_open_fd_count(), before);
	close(fd);
}

static void test_vring_addr_checks(void **state)
{
	struct fixture *f = *state;
	struct vhost_user_vring_addr addr = {
	    .index = 0,
	    .desc_user_addr = RAM_USER_ADDR,
	    .avail_user_addr = RAM_USER_ADDR + 0x1000,
	    .used_user_addr = RAM_USER_ADDR + 0x2000,
	};
	/* No memory table yet. */
	fe_request(f->front, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr));
	expect_end(f, "no memory table");

	int fd = fe_memfd(RAM_SIZE, NULL);
	struct vhost_user_mem_region r = ram_region();
	send_mem_table(f, &r, 1, &fd, 1);
	close(fd);
	expect_ok(f);

	struct vhost_user_vring_addr bad = addr;
	bad.desc_user_addr += 8;
	fe_request(f->front, VHOST_USER_SET_VRING_ADDR, &bad, sizeof(bad));
	expect_end(f, "misaligned");

	bad = addr;
	bad.used_user_addr = RAM_USER_ADDR + RAM_SIZE;
	fe_request(f->front, VHOST_USER_SET_VRING_ADDR, &bad, sizeof(bad));
	expect_end(f, "used ring address");

	bad = addr;
	bad.flags = 2;
	fe_request(f->front, VHOST_USER_SET_VRING_ADDR, &bad, sizeof(bad));
	expect_end(f, "flags");

	fe_request(f->front, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr));
	expect_ok(f);
}

static void test_vring_enable_needs_protocol_features(void **state)
{
	struct fixture *f = *state;
	fe_request_u64(f->front, VHOST_USER_SET_FEATURES, F_VERSION_1);
	expect_ok(f);
	fe_request_state(f->front, VHOST_USER_SET_VRING_ENABLE, 0, 1);
	expect_end(f, "PROTOCOL_FEATURES");
}

static void test_vring_enable_values(void **state)
{
	struct fixture *f = *state;
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES);
	fe_request_state(f->front, VHOST_USER_SET_VRING_ENABLE, 1, 1);
	expect_ok(f);
	fe_request_state(f->front, VHOST_USER_SET_VRING_ENABLE, 1, 0);
	expect_ok(f);
	fe_request_state(f->front, VHOST_USER_SET_VRING_ENABLE, 1, 2);
	expect_end(f, "not 0 or 1");
}

static void test_get_vring_base_of_stopped_ring(void **state)
{
	struct fixture *f = *state;
	fe_request_state(f->front, VHOST_USER_SET_VRING_BASE, 1, 4321);
	expect_ok(f);
	fe_request_state(f->front, VHOST_USER_GET_VRING_BASE, 1, 0);
	expect_ok(f);
	struct vhost_user_vring_state s;
	assert_int_equal(fe_reply(f->front, VHOST_USER_GET_VRING_BASE, &s, sizeof(s)), sizeof(s));
	assert_int_equal(s.index, 1);
	assert_int_equal(s.num, 4321);
	fe_request_state(f->front, VHOST_USER_SET_VRING_BASE, 1, 0x10000);
	expect_end(f, "16 bits");
}

/* ---- a queue started through the control plane serves a request ---- */

#define RING_SIZE     8
#define DESC_OFF      0x1000
#define AVAIL_OFF     0x2000
#define USED_OFF      0x3000
#define HEADER_OFF    0x4000
#define ID_OFF	      0x5000
#define STATUS_OFF    0x6000
#define VRING_F_NEXT  1
#define VRING_F_WRITE 2

static void put_desc(uint8_t *ram, unsigned int i, uint64_t off, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct vring_desc d = {RAM_GPA + off, len, flags, next};
	memcpy(ram + DESC_OFF + i * sizeof(d), &d, sizeof(d));
}

static uint16_t used_idx(const uint8_t *ram)
{
	return __atomic_load_n((const uint16_t *)(ram + USED_OFF + 2), __ATOMIC_ACQUIRE);
}

static uint16_t used_flags(const uint8_t *ram)
{
	return __atomic_load_n((const uint16_t *)(ram + USED_OFF), __ATOMIC_ACQUIRE);
}

/* Sets queue 0 up through the control plane (with SET_VRING_NUM when
 * ring_size is not 0) with one GET_ID request on its ring; the queue starts
 * with the kick fd. Returns the guest memory; *kick and *call are the
 * front end's ends of the eventfds. */
static uint8_t *start_queue_with_get_id(struct fixture *f, uint32_t ring_size, int *kick_out,
					int *call_out)
{
	uint8_t *ram;
	int mem_fd = fe_memfd(RAM_SIZE, (void **)&ram);
	negotiate(f, F_VERSION_1 | F_PROTOCOL_FEATURES);
	struct vhost_user_mem_region r = ram_region();
	add_region(f, r, mem_fd);
	expect_ok(f);
	close(mem_fd);

	/* GET_ID: header, 20-byte id buffer, status byte. */
	const uint32_t get_id[4] = {8, 0, 0, 0};
	memcpy(ram + HEADER_OFF, get_id, sizeof(get_id));
	put_desc(ram, 0, HEADER_OFF, 16, VRING_F_NEXT, 1);
	put_desc(ram, 1, ID_OFF, 20, VRING_F_NEXT | VRING_F_WRITE, 2);
	put_desc(ram, 2, STATUS_OFF, 1, VRING_F_WRITE, 0);
	ram[STATUS_OFF] = 0xff;
	uint16_t head = 0, avail_idx = 1;
	memcpy(ram + AVAIL_OFF + 4, &head, sizeof(head));

	if (ring_size) {
		fe_request_state(f->front, VHOST_USER_SET_VRING_NUM, 0, ring_size);
		expect_ok(f);
	}
	fe_request_state(f->front, VHOST_USER_SET_VRING_BASE, 0, 0);
	expect_ok(f);
	struct vhost_user_vring_addr addr = {
	    .index = 0,
	    .desc_user_addr = RAM_USER_ADDR + DESC_OFF,
	    .avail_user_addr = RAM_USER_ADDR + AVAIL_OFF,
	    .used_user_addr = RAM_USER_ADDR + USED_OFF,
	};
	fe_request(f->front, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr));
	expect_ok(f);
	int kick = eventfd(0, EFD_CLOEXEC);
	int call = eventfd(0, EFD_CLOEXEC);
	uint64_t index = 0;
	fe_send(f->front, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, &index, sizeof(index),
		&call, 1);
	expect_ok(f);
	fe_send(f->front, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, &index, sizeof(index),
		&kick, 1);
	expect_ok(f);
	fe_request_state(f->front, VHOST_USER_SET_VRING_ENABLE, 0, 1);
	expect_ok(f);

	__atomic_store_n((uint16_t *)(ram + AVAIL_OFF + 2), avail_idx, __ATOMIC_RELEASE);
	*kick_out = kick;
	*call_out = call;
	return ram;
}

/* Starts queue 0, runs one GET_ID request and stops the queue. */
static void serve_get_id(struct fixture *f, uint32_t ring_size)
{
	int kick, call;
	uint8_t *ram = start_queue_with_get_id(f, ring_size, &kick, &call);
	/* The queue signals its new call fd once as it starts; take that
	 * signal so the poll below waits for the request's. */
	struct pollfd start = {.fd = call, .events = POLLIN};
	assert_int_equal(poll(&start, 1, 5000), 1);
	uint64_t started = 0;
	assert_int_equal(read(call, &started, sizeof(started)), sizeof(started));
	uint64_t one = 1;
	assert_int_equal(write(kick, &one, sizeof(one)), sizeof(one));

	struct pollfd pfd = {.fd = call, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	assert_int_equal(used_idx(ram), 1);
	assert_int_equal(ram[STATUS_OFF], 0);
	char id[20] = "ubiblk-test";
	assert_memory_equal(ram + ID_OFF, id, sizeof(id));

	/* Stopping the ring reports where the front end must resume. */
	fe_request_state(f->front, VHOST_USER_GET_VRING_BASE, 0, 0);
	expect_ok(f);
	struct vhost_user_vring_state s;
	assert_int_equal(fe_reply(f->front, VHOST_USER_GET_VRING_BASE, &s, sizeof(s)), sizeof(s));
	assert_int_equal(s.index, 0);
	assert_int_equal(s.num, 1);

	close(kick);
	close(call);
	munmap(ram, RAM_SIZE);
}

static void test_started_queue_serves_get_id(void **state)
{
	serve_get_id(*state, RING_SIZE);
}

/* Without SET_VRING_NUM the ring is queue_size long. */
static void test_ring_size_defaults_to_queue_size(void **state)
{
	serve_get_id(*state, 0);
}

/* Threadless workers: the ring is really started (the device stops
 * notifications while it polls) and stopped, but nothing processes it. */
static void test_threadless_queue_starts_and_stops(void **state)
{
	struct fixture *f = *state;
	int kick, call;
	uint8_t *ram = start_queue_with_get_id(f, RING_SIZE, &kick, &call);
	uint64_t one = 1;
	assert_int_equal(write(kick, &one, sizeof(one)), sizeof(one));
	assert_int_equal(used_flags(ram), VRING_USED_F_NO_NOTIFY);

	fe_request_state(f->front, VHOST_USER_GET_VRING_BASE, 0, 0);
	expect_ok(f);
	struct vhost_user_vring_state s;
	assert_int_equal(fe_reply(f->front, VHOST_USER_GET_VRING_BASE, &s, sizeof(s)), sizeof(s));
	assert_int_equal(s.num, 0); /* nothing was popped */
	assert_int_equal(used_idx(ram), 0);
	assert_int_equal(used_flags(ram), 0); /* stopped: the ring asks for kicks again */

	/* Started again, the queue refuses ring changes like a threaded one. */
	int kick2 = eventfd(0, EFD_CLOEXEC);
	uint64_t index = 0;
	fe_send(f->front, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, &index, sizeof(index),
		&kick2, 1);
	expect_ok(f);
	assert_int_equal(used_flags(ram), VRING_USED_F_NO_NOTIFY);
	fe_request_state(f->front, VHOST_USER_SET_VRING_NUM, 0, RING_SIZE);
	expect_end(f, "the queue is running");
	close(kick2);
	close(kick);
	close(call);
	munmap(ram, RAM_SIZE);
	/* teardown destroys the control with the queue still started */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_feature_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unoffered_feature_ends_connection, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_unoffered_protocol_feature_ends_connection, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_queue_num_needs_mq, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reply_ack, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_owner_allows_new_owner, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsupported_requests_end_connection, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_device_state_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_config_sizes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config_space_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_config_needs_config_feature, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_config_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_config_is_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mem_table_closes_fds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mem_table_overlap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mem_table_overflow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mem_table_zero_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mem_table_shape, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_add_and_remove_regions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_add_overlapping_region, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_add_region_needs_one_fd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_add_region_needs_mem_slots_feature, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_vring_index_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vring_num_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vring_fd_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vring_addr_checks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vring_enable_needs_protocol_features, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_vring_enable_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_vring_base_of_stopped_ring, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_started_queue_serves_get_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ring_size_defaults_to_queue_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threadless_queue_starts_and_stops,
					    setup_threadless, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Queue workers end to end: a fake guest publishes chains and kicks, the
 * worker runs them on a real bdev (null, or a file with the sync and
 * io_uring engines) and the test checks guest memory, the used ring, the
 * call eventfd and the file. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev/bdev.h"
#include "../bdev/uring_submit_faults.h"
#include "common/common.h"
#include "fake_guest.h"
#include "vhost/queue_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define NUM	     256
#define DISK_SECTORS 4096u /* 2 MiB */
#define W	     VRING_DESC_F_WRITE
#define TIMEOUT_MS   5000

struct fixture {
	struct fake_guest g;
	struct bdev *dev;
	struct queue_worker *qw;
	struct queue_worker_config cfg;
	int kick;
	int call;
	int disk_fd; /* the test's view of the file, or -1 */
	char path[4096];
};

/* ---- set-up ---- */

static struct fixture *new_fixture(void)
{
	struct fixture *f = calloc(1, sizeof(*f));
	fake_guest_init(&f->g, NUM);
	f->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(f->kick >= 0 && f->call >= 0);
	f->disk_fd = -1;
	f->cfg = (struct queue_worker_config){
	    .index = 0,
	    .max_queue_size = NUM,
	    .seg_size_max = 65536,
	    .seg_count_max = 4,
	    .poll_timeout_us = 0,
	    .cpu = -1,
	    .device_id = "ubiblk-test",
	};
	return f;
}

static int setup_null(void **state)
{
	struct fixture *f = new_fixture();
	assert_int_equal(bdev_open_null(DISK_SECTORS, &f->dev), 0);
	f->cfg.dev = f->dev;
	*state = f;
	return 0;
}

static int open_file(struct fixture *f, enum bdev_engine engine)
{
	const char *dir = getenv("VHOST_TEST_DIR");
	snprintf(f->path, sizeof(f->path), "%s/vhost-worker-XXXXXX", dir ? dir : "/tmp");
	f->disk_fd = mkstemp(f->path);
	assert_true(f->disk_fd >= 0);
	assert_int_equal(ftruncate(f->disk_fd, DISK_SECTORS * SECTOR_SIZE), 0);
	struct bdev_file_options opts = {
	    .path = f->path, .engine = engine, .direct = true, .queue_depth = NUM};
	struct error err = {0};
	int rc = bdev_open_file(&opts, &f->dev, &err);
	if (rc < 0)
		print_message("bdev_open_file: %s\n", err.text);
	return rc;
}

static int setup_sync_file(void **state)
{
	struct fixture *f = new_fixture();
	assert_int_equal(open_file(f, BDEV_ENGINE_SYNC), 0);
	f->cfg.dev = f->dev;
	*state = f;
	return 0;
}

static int setup_uring_file(void **state)
{
	struct fixture *f = new_fixture();
	assert_int_equal(open_file(f, BDEV_ENGINE_IO_URING), 0);
	f->cfg.dev = f->dev;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	queue_worker_destroy(f->qw);
	bdev_close(f->dev);
	if (f->disk_fd >= 0) {
		close(f->disk_fd);
		unlink(f->path);
	}
	close(f->kick);
	close(f->call);
	fake_guest_fini(&f->g);
	free(f);
	return 0;
}

static void create_worker(struct fixture *f)
{
	assert_int_equal(queue_worker_create(&f->cfg, &f->qw), 0);
	queue_worker_set_memory(f->qw, f->g.mem);
	assert_int_equal(queue_worker_set_num(f->qw, NUM), 0);
	assert_int_equal(queue_worker_set_addr(f->qw, FG_DESC, FG_AVAIL, FG_USED), 0);
}

static uint64_t take_calls(struct fixture *f);
static uint64_t wait_calls(struct fixture *f);

/* Hands the worker its own copies of the eventfds and starts the queue. */
static void start_queue(struct fixture *f, bool event_idx)
{
	/* Signals left from before a restart are not this start's. */
	take_calls(f);
	queue_worker_set_kick_fd(f->qw, dup(f->kick));
	queue_worker_set_call_fd(f->qw, dup(f->call));
	queue_worker_set_event_idx(f->qw, event_idx);
	queue_worker_set_enabled(f->qw, true);
	assert_int_equal(queue_worker_start(f->qw), 0);
	assert_true(queue_worker_started(f->qw));
	/* A queue that starts signals its call fd once (queue_worker_signal_guest);
	 * a restarted queue may also have completed a pending head already. */
	assert_true(wait_calls(f) >= 1);
}

static void start_worker(struct fixture *f, bool event_idx)
{
	create_worker(f);
	start_queue(f, event_idx);
}

/* ---- driver side ---- */

static void kick(struct fixture *f)
{
	uint64_t one = 1;
	assert_int_equal(write(f->kick, &one, sizeof(one)), sizeof(one));
}

static uint64_t ms_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - start->tv_sec) * 1000 +
	       (uint64_t)((now.tv_nsec - start->tv_nsec) / 1000000);
}

static void wait_used(struct fixture *f, uint16_t idx)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (fg_used_idx(&f->g) != idx) {
		if (ms_since(&start) > TIMEOUT_MS)
			fail_msg("used idx %u, expected %u", fg_used_idx(&f->g), idx);
		usleep(100);
	}
}

/* The call eventfd's counter (how many signals), 0 if none; resets it. */
static uint64_t take_calls(struct fixture *f)
{
	uint64_t value = 0;
	if (read(f->call, &value, sizeof(value)) < 0) {
		assert_int_equal(errno, EAGAIN);
		return 0;
	}
	return value;
}

static uint64_t wait_calls(struct fixture *f)
{
	struct pollfd p = {.fd = f->call, .events = POLLIN};
	assert_int_equal(poll(&p, 1, TIMEOUT_MS), 1);
	return take_calls(f);
}

/* Waits until `cond` holds for the guest-visible value read by `get`. */
static void wait_u16(struct fixture *f, uint16_t (*get)(struct fake_guest *), uint16_t want)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (get(&f->g) != want) {
		if (ms_since(&start) > TIMEOUT_MS)
			fail_msg("value %u, expected %u", get(&f->g), want);
		usleep(100);
	}
}

struct io {
	uint16_t head;
	uint64_t data;
	uint64_t status;
};

/* Lays out (without publishing) a read or write of len bytes at sector,
 * from a buffer at data (or a fresh one when data is 0). */
static struct io put_rw(struct fixture *f, uint32_t type, uint64_t sector, uint32_t len,
			uint64_t data)
{
	struct io io;
	uint64_t hdr = fg_header(&f->g, type, sector);
	io.data = data ? data : fg_alloc(&f->g, len, 4096, 0);
	io.status = fg_status(&f->g);
	struct fake_buf bufs[] = {
	    {hdr, 16, 0}, {io.data, len, type == VIRTIO_BLK_T_IN ? W : 0}, {io.status, 1, W}};
	io.head = fg_chain(&f->g, bufs, 3);
	fg_put(&f->g, io.head);
	return io;
}

static uint8_t status_of(struct fixture *f, const struct io *io)
{
	return *(uint8_t *)fg_ptr(&f->g, io->status);
}

/* Publishes, kicks and waits for the used index to reach `idx`. */
static void run_until(struct fixture *f, uint16_t idx)
{
	fg_publish(&f->g);
	kick(f);
	wait_used(f, idx);
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 31 + seed) ^ (i >> 9));
}

/* ---- tests ---- */

static void check_roundtrip(struct fixture *f, uint32_t offset, uint32_t len)
{
	uint8_t *expect = malloc(len);
	fill_pattern(expect, len, offset + len);

	uint64_t out_buf = fg_alloc(&f->g, len, 4096, offset);
	memcpy(fg_ptr(&f->g, out_buf), expect, len);
	uint16_t used = fg_used_idx(&f->g);
	struct io w = put_rw(f, VIRTIO_BLK_T_OUT, 8, len, out_buf);
	run_until(f, (uint16_t)(used + 1));
	assert_int_equal(status_of(f, &w), VIRTIO_BLK_S_OK);
	struct vring_used_elem e = fg_used_elem(&f->g, used);
	assert_int_equal(e.id, w.head);
	assert_int_equal(e.len, 1); /* only the status byte was written */

	uint64_t in_buf = fg_alloc(&f->g, len, 4096, offset);
	memset(fg_ptr(&f->g, in_buf), 0, len);
	struct io r = put_rw(f, VIRTIO_BLK_T_IN, 8, len, in_buf);
	run_until(f, (uint16_t)(used + 2));
	assert_int_equal(status_of(f, &r), VIRTIO_BLK_S_OK);
	e = fg_used_elem(&f->g, (uint16_t)(used + 1));
	assert_int_equal(e.id, r.head);
	assert_int_equal(e.len, len + 1);
	assert_memory_equal(fg_ptr(&f->g, in_buf), expect, len);

	if (f->disk_fd >= 0) {
		uint8_t *disk = malloc(len);
		assert_int_equal(pread(f->disk_fd, disk, len, 8 * SECTOR_SIZE), len);
		assert_memory_equal(disk, expect, len);
		free(disk);
	}
	free(expect);
	assert_true(wait_calls(f) >= 1); /* the signal follows the used entry */
}

static void test_read_write_zero_copy(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	check_roundtrip(f, 0, 4096);
	check_roundtrip(f, 0, 65536);
}

static void test_read_write_through_bounce_buffer(void **state)
{
	struct fixture *f = *state;
	f->cfg.seg_count_max = 1;
	f->cfg.seg_size_max = 4096;
	start_worker(f, false);
	/* Not 512-aligned in guest memory: bounced. */
	check_roundtrip(f, 8, 4096);
	/* Larger than the slot's bounce buffer (seg_count_max * seg_size_max). */
	check_roundtrip(f, 8, 65536);
}

static void test_buffer_spanning_regions(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	uint32_t len = 8192;
	uint8_t expect[8192];
	fill_pattern(expect, len, 99);
	/* Aligned halves on both sides of the split, then an unaligned split. */
	uint64_t bufs[] = {FG_SPLIT - 4096, FG_SPLIT - 1000};
	for (int i = 0; i < 2; i++) {
		memcpy(fg_ptr(&f->g, bufs[i]), expect, len);
		struct io w = put_rw(f, VIRTIO_BLK_T_OUT, 16, len, bufs[i]);
		run_until(f, (uint16_t)(2 * i + 1));
		assert_int_equal(status_of(f, &w), VIRTIO_BLK_S_OK);
		memset(fg_ptr(&f->g, bufs[i]), 0, len);
		struct io r = put_rw(f, VIRTIO_BLK_T_IN, 16, len, bufs[i]);
		run_until(f, (uint16_t)(2 * i + 2));
		assert_int_equal(status_of(f, &r), VIRTIO_BLK_S_OK);
		assert_memory_equal(fg_ptr(&f->g, bufs[i]), expect, len);
	}
}

static void test_flush_discard_write_zeroes(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	uint8_t ones[8192];
	memset(ones, 0xaa, sizeof(ones));
	assert_int_equal(pwrite(f->disk_fd, ones, sizeof(ones), 0), sizeof(ones));
	assert_int_equal(fsync(f->disk_fd), 0);

	uint64_t st[3];
	uint32_t types[] = {VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_FLUSH};
	uint32_t flags[] = {0, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, 0};
	uint64_t sectors[] = {0, 8, 0};
	for (int i = 0; i < 3; i++) {
		uint64_t hdr = fg_header(&f->g, types[i], 12345);
		uint64_t seg = fg_alloc(&f->g, 16, 16, 0);
		struct virtio_blk_discard_write_zeroes *s = fg_ptr(&f->g, seg);
		s->sector = sectors[i];
		s->num_sectors = 8;
		s->flags = flags[i];
		st[i] = fg_status(&f->g);
		struct fake_buf with_seg[] = {{hdr, 16, 0}, {seg, 16, 0}, {st[i], 1, W}};
		struct fake_buf flush[] = {{hdr, 16, 0}, {st[i], 1, W}};
		fg_put(&f->g, types[i] == VIRTIO_BLK_T_FLUSH ? fg_chain(&f->g, flush, 2)
							     : fg_chain(&f->g, with_seg, 3));
	}
	run_until(f, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(*(uint8_t *)fg_ptr(&f->g, st[i]), VIRTIO_BLK_S_OK);
	uint8_t back[8192];
	assert_int_equal(pread(f->disk_fd, back, sizeof(back), 0), sizeof(back));
	uint8_t zeroes[8192] = {0};
	assert_memory_equal(back, zeroes, 8192); /* both 4 KiB ranges read as zeroes */
}

static void test_requests_without_device_io(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	/* GET_ID */
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_GET_ID, 0);
	uint64_t id = fg_alloc(&f->g, 20, 16, 0);
	uint64_t st1 = fg_status(&f->g);
	struct fake_buf get_id[] = {{hdr, 16, 0}, {id, 20, W}, {st1, 1, W}};
	uint16_t h1 = fg_chain(&f->g, get_id, 3);
	fg_put(&f->g, h1);
	/* an unknown type */
	uint64_t hdr2 = fg_header(&f->g, 0xdead, 0);
	uint64_t st2 = fg_status(&f->g);
	struct fake_buf unknown[] = {{hdr2, 16, 0}, {st2, 1, W}};
	uint16_t h2 = fg_chain(&f->g, unknown, 2);
	fg_put(&f->g, h2);
	/* a chain without a usable status: returned with length 0 */
	uint64_t st3 = fg_status(&f->g);
	struct fake_buf no_status[] = {{hdr2, 16, 0}, {st3, 1, 0}};
	uint16_t h3 = fg_chain(&f->g, no_status, 2);
	fg_put(&f->g, h3);
	/* a read past the end of the device */
	struct io past = put_rw(f, VIRTIO_BLK_T_IN, DISK_SECTORS, 512, 0);
	run_until(f, 4);

	static const uint8_t expect_id[20] = "ubiblk-test";
	assert_memory_equal(fg_ptr(&f->g, id), expect_id, 20);
	assert_int_equal(*(uint8_t *)fg_ptr(&f->g, st1), VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)fg_ptr(&f->g, st2), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(*(uint8_t *)fg_ptr(&f->g, st3), 0xff);
	assert_int_equal(status_of(f, &past), VIRTIO_BLK_S_IOERR);
	uint16_t heads[] = {h1, h2, h3, past.head};
	uint32_t lens[] = {21, 1, 0, 1};
	for (uint16_t i = 0; i < 4; i++) {
		struct vring_used_elem e = fg_used_elem(&f->g, i);
		assert_int_equal(e.id, heads[i]);
		assert_int_equal(e.len, lens[i]);
	}
	assert_int_equal(wait_calls(f), 1); /* one batch, one signal */
}

static void test_batch_signals_once(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	for (int i = 0; i < 16; i++)
		put_rw(f, VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, 0);
	run_until(f, 16);
	usleep(20000);
	assert_int_equal(take_calls(f), 1);
}

static void test_no_interrupt_flag(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	fg_set_avail_flags(&f->g, VRING_AVAIL_F_NO_INTERRUPT);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 1);
	usleep(20000);
	assert_int_equal(take_calls(f), 0);
	fg_set_avail_flags(&f->g, 0);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 2);
	assert_int_equal(wait_calls(f), 1);
}

static void test_event_idx_signals(void **state)
{
	struct fixture *f = *state;
	start_worker(f, true);
	/* The driver wants a signal only once used entry 3 is there. */
	fg_set_used_event(&f->g, 3);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 1);
	usleep(20000);
	assert_int_equal(take_calls(f), 0);
	/* Entries 1..3 in one batch cross used_event: one signal. */
	for (int i = 0; i < 3; i++)
		put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 4);
	assert_int_equal(wait_calls(f), 1);
	/* Re-armed before sleeping: avail_event = next_avail. */
	wait_u16(f, fg_avail_event, 4);
}

static void test_polling_suppresses_kicks(void **state)
{
	struct fixture *f = *state;
	f->cfg.poll_timeout_us = 2000000;
	/* Even if this thread is preempted (a loaded machine): the window must
	 * open as the traffic says. */
	f->cfg.poll_wake_cost_ns = 2000000000ull;
	start_worker(f, false);
	/* The window starts closed and doubles (from 4 µs) after each sleep
	 * shorter than the bound (poll_window.h): requests 100 ms apart open
	 * it past 100 ms within 16 sleeps, and from then on polling catches
	 * them. */
	uint16_t n = 0;
	for (int i = 0; i < 18; i++) {
		put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
		run_until(f, ++n);
		usleep(100 * 1000);
	}
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, ++n);
	/* Still in its poll window: the driver is told not to kick... */
	assert_int_equal(fg_used_flags(&f->g), VRING_USED_F_NO_NOTIFY);
	/* ...and a request published without a kick is picked up. */
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	fg_publish(&f->g);
	wait_used(f, ++n);
	/* After the window it re-arms and sleeps. */
	wait_u16(f, fg_used_flags, 0);
}

/* Polling mode (a front end that gave no kick fd): nothing would wake the
 * worker, so it polls whatever its adaptive window says, also long after
 * the last request. */
static void test_polling_mode_polls_past_the_window(void **state)
{
	struct fixture *f = *state;
	f->cfg.poll_timeout_us = 10;
	start_worker(f, false);
	/* SET_VRING_KICK with the no-fd flag on a running queue. */
	queue_worker_set_kick_fd(f->qw, -1);
	for (uint16_t n = 1; n <= 3; n++) {
		usleep(50 * 1000); /* far past the 10 µs bound */
		put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
		fg_publish(&f->g);
		wait_used(f, n);
	}
}

static void test_sleeping_worker_rearms(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	wait_u16(f, fg_used_flags, 0);
	for (int round = 1; round <= 20; round++) {
		put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
		run_until(f, (uint16_t)round);
	}
}

static void test_disabled_queue_ignores_kicks(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	queue_worker_set_enabled(f->qw, false);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	fg_publish(&f->g);
	kick(f);
	usleep(50000);
	assert_int_equal(fg_used_idx(&f->g), 0);
	queue_worker_set_enabled(f->qw, true);
	wait_used(f, 1);
}

static void test_stop_and_restart(void **state)
{
	struct fixture *f = *state;
	create_worker(f);
	/* Never started: stop reports the base it was given. */
	assert_int_equal(queue_worker_set_base(f->qw, 0), 0);
	assert_int_equal(queue_worker_stop(f->qw), 0);
	start_queue(f, false);
	for (int i = 0; i < 3; i++)
		put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 3);
	assert_int_equal(queue_worker_stop(f->qw), 3);
	assert_false(queue_worker_started(f->qw));
	/* Stopped: kicks (there is no kick fd any more) and heads are ignored. */
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	fg_publish(&f->g);
	usleep(20000);
	assert_int_equal(fg_used_idx(&f->g), 3);
	/* Restarted where it stopped, it processes the pending head. */
	assert_int_equal(queue_worker_set_base(f->qw, 3), 0);
	start_queue(f, false);
	kick(f);
	wait_used(f, 4);
	assert_int_equal(queue_worker_stop(f->qw), 4);
}

static void test_stop_waits_for_in_flight_requests(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	struct io ios[32];
	for (int i = 0; i < 32; i++)
		ios[i] = put_rw(f, i % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, (uint64_t)i * 128,
				65536, 0);
	fg_publish(&f->g);
	kick(f);
	usleep(200);
	uint16_t next_avail = queue_worker_stop(f->qw);
	/* Everything popped before the stop has completed and is used. */
	assert_int_equal(fg_used_idx(&f->g), next_avail);
	for (uint16_t i = 0; i < next_avail; i++)
		assert_int_equal(status_of(f, &ios[fg_used_elem(&f->g, i).id / 3]),
				 VIRTIO_BLK_S_OK);
}

static void test_memory_swap_with_requests_in_flight(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	/* A table with fresh mappings of the same memory: once swapped in, the
	 * old one lives on only through the requests still in flight. */
	struct guest_memory *empty = guest_memory_new(-1);
	struct guest_memory *one, *both;
	struct vhost_user_mem_region r0 = {0, FG_REGION_SIZE, 0x10000000, 0};
	struct vhost_user_mem_region r1 = {FG_SPLIT, FG_REGION_SIZE, 0x20000000, FG_SPLIT};
	assert_int_equal(guest_memory_add(empty, &r0, f->g.fd, &one), 0);
	assert_int_equal(guest_memory_add(one, &r1, f->g.fd, &both), 0);
	guest_memory_unref(empty);
	guest_memory_unref(one);

	struct io ios[40];
	for (int i = 0; i < 40; i++)
		ios[i] = put_rw(f, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, (uint64_t)i * 64,
				32768, 0);
	fg_publish(&f->g);
	kick(f);
	queue_worker_set_memory(f->qw, both);
	guest_memory_unref(f->g.mem);
	f->g.mem = both;

	wait_used(f, 40);
	for (int i = 0; i < 40; i++)
		assert_int_equal(status_of(f, &ios[i]), VIRTIO_BLK_S_OK);
	/* And the new table serves new requests. */
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 41);
}

/* A memory table holding only the fixture's upper region: the rings, in the
 * lower one, are not in it. The caller drops the reference. */
static struct guest_memory *memory_without_the_rings(struct fixture *f)
{
	struct guest_memory *high;
	struct vhost_user_mem_region r1 = {FG_SPLIT, FG_REGION_SIZE, 0x20000000, FG_SPLIT};
	assert_int_equal(guest_memory_add(NULL, &r1, f->g.fd, &high), 0);
	return high;
}

static void test_memory_without_the_rings_stops_the_queue(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	struct guest_memory *high = memory_without_the_rings(f);
	queue_worker_set_memory(f->qw, high);
	guest_memory_unref(high);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	fg_publish(&f->g);
	kick(f);
	usleep(20000);
	assert_int_equal(fg_used_idx(&f->g), 0);
	assert_int_equal(queue_worker_stop(f->qw), 0);
}

static void test_corrupt_avail_index_stops_the_queue(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 1);
	fg_set_avail_idx(&f->g, 1 + NUM + 1);
	kick(f);
	usleep(20000);
	/* Later sane-looking requests are not processed either. */
	fg_set_avail_idx(&f->g, 1);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	fg_publish(&f->g);
	kick(f);
	usleep(20000);
	assert_int_equal(fg_used_idx(&f->g), 1);
	assert_int_equal(queue_worker_stop(f->qw), 1);
	/* A fresh start (reconnect) processes the queue again. */
	assert_int_equal(queue_worker_set_base(f->qw, 1), 0);
	start_queue(f, false);
	kick(f);
	wait_used(f, 2);
}

static void test_hostile_chains_do_not_stop_the_queue(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	/* a loop, then an indirect table inside an indirect table */
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_IN, 0);
	fg_write_desc(&f->g, FG_DESC, 0, hdr, 16, VRING_DESC_F_NEXT, 1);
	fg_write_desc(&f->g, FG_DESC, 1, hdr, 16, VRING_DESC_F_NEXT, 0);
	fg_put(&f->g, 0);
	fg_write_desc(&f->g, FG_DESC, 2, FG_INDIRECT, 16, VRING_DESC_F_INDIRECT, 0);
	fg_write_desc(&f->g, FG_INDIRECT, 0, FG_INDIRECT, 16, VRING_DESC_F_INDIRECT, 0);
	fg_put(&f->g, 2);
	f->g.next_desc = 3;
	struct io ok = put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 3);
	assert_int_equal(fg_used_elem(&f->g, 0).len, 0);
	assert_int_equal(fg_used_elem(&f->g, 1).len, 0);
	assert_int_equal(status_of(f, &ok), VIRTIO_BLK_S_OK);
}

static void test_more_heads_than_slots(void **state)
{
	struct fixture *f = *state;
	/* A driver reusing one chain for every entry: never more in flight than
	 * slots, and everything is eventually returned. */
	f->cfg.max_queue_size = NUM;
	start_worker(f, false);
	struct io io = put_rw(f, VIRTIO_BLK_T_IN, 0, 4096, 0);
	for (int round = 0; round < 4; round++) {
		for (int i = round == 0 ? 1 : 0; i < NUM; i++)
			fg_put(&f->g, io.head);
		run_until(f, (uint16_t)(NUM * (round + 1)));
	}
	assert_int_equal(status_of(f, &io), VIRTIO_BLK_S_OK);
}

/* ---- hostile front ends, busy kernels, bounce memory ---- */

/* The front end swaps the call fd of a running queue (QEMU's masked
 * notifier while the guest masks the interrupt, and back): each new fd is
 * signalled once at once, so a signal the old fd took after the front end
 * last looked at it is not lost. */
static void test_replaced_call_fd_is_signalled(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 1);
	assert_int_equal(wait_calls(f), 1);
	int masked = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(masked >= 0);
	queue_worker_set_call_fd(f->qw, dup(masked));
	struct pollfd p = {.fd = masked, .events = POLLIN};
	assert_int_equal(poll(&p, 1, TIMEOUT_MS), 1);
	uint64_t value = 0;
	assert_int_equal(read(masked, &value, sizeof(value)), sizeof(value));
	assert_int_equal(value, 1);
	queue_worker_set_call_fd(f->qw, dup(f->call));
	assert_int_equal(wait_calls(f), 1);
	/* Signals given while requests complete go to the new fd as before. */
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 2);
	assert_int_equal(wait_calls(f), 1);
	close(masked);
}

/* The front end clears O_NONBLOCK on the call fd it shares with us and
 * saturates the counter: a plain write(2) would block the worker for good.
 * Requests keep completing, and the queue still stops. */
static void test_saturated_blocking_call_fd(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	assert_int_equal(fcntl(f->call, F_SETFL, 0), 0);
	uint64_t saturated = 0xfffffffffffffffeull;
	assert_int_equal(write(f->call, &saturated, sizeof(saturated)), sizeof(saturated));
	alarm(20); /* a wedged worker kills the test instead of hanging it */
	for (uint16_t i = 1; i <= 3; i++) {
		put_rw(f, VIRTIO_BLK_T_IN, 0, 4096, 0);
		run_until(f, i);
	}
	assert_int_equal(queue_worker_stop(f->qw), 3);
	alarm(0);
	assert_int_equal(fcntl(f->call, F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(take_calls(f), saturated);
}

/* The kernel refuses submits for a while (io_uring_enter EAGAIN): the
 * worker must keep retrying instead of sleeping on a completion fd that
 * nothing will signal. */
static void test_busy_kernel_does_not_lose_requests(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	/* More refusals than one round (submit, then poll) and a stray
	 * wake-up (the kick) use. */
	__atomic_store_n(&bdev_uring_fail_submits, 10, __ATOMIC_RELAXED);
	struct io io = put_rw(f, VIRTIO_BLK_T_IN, 0, 4096, 0);
	run_until(f, 1);
	assert_int_equal(status_of(f, &io), VIRTIO_BLK_S_OK);
	assert_int_equal(__atomic_load_n(&bdev_uring_fail_submits, __ATOMIC_RELAXED), 0);
	assert_int_equal(queue_worker_stop(f->qw), 1);
}

/* Requests that complete while a memory table without the rings is in
 * place are returned once the rings are mapped again, not dropped. */
static void test_completions_while_rings_unmapped_are_kept(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	struct guest_memory *high = memory_without_the_rings(f);

	/* Hold the requests in the submission queue while the table changes. */
	const unsigned hold = 1u << 30;
	__atomic_store_n(&bdev_uring_fail_submits, hold, __ATOMIC_RELAXED);
	struct io ios[8];
	for (int i = 0; i < 8; i++)
		ios[i] =
		    put_rw(f, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, (uint64_t)i * 8, 4096, 0);
	fg_publish(&f->g);
	kick(f);
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (__atomic_load_n(&bdev_uring_fail_submits, __ATOMIC_RELAXED) == hold) {
		if (ms_since(&start) > TIMEOUT_MS)
			fail_msg("the worker never tried to submit");
		usleep(100);
	}
	queue_worker_set_memory(f->qw, high); /* the rings are gone */
	__atomic_store_n(&bdev_uring_fail_submits, 0, __ATOMIC_RELAXED);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (int i = 0; i < 8; i++)
		while (status_of(f, &ios[i]) != VIRTIO_BLK_S_OK) {
			if (ms_since(&start) > TIMEOUT_MS)
				fail_msg("request %d did not complete", i);
			usleep(100);
		}
	usleep(20000);
	assert_int_equal(fg_used_idx(&f->g), 0);

	queue_worker_set_memory(f->qw, f->g.mem); /* the rings are back */
	wait_used(f, 8);
	bool seen[8] = {false};
	for (uint16_t i = 0; i < 8; i++) {
		struct vring_used_elem e = fg_used_elem(&f->g, i);
		for (int j = 0; j < 8; j++)
			if (e.id == ios[j].head) {
				assert_false(seen[j]);
				seen[j] = true;
				assert_int_equal(e.len, j % 2 ? 4097 : 1);
			}
	}
	for (int j = 0; j < 8; j++)
		assert_true(seen[j]);
	assert_true(wait_calls(f) >= 1); /* the signal follows the used entry */
	guest_memory_unref(high);
	assert_int_equal(queue_worker_stop(f->qw), 8);
}

/* A feature change (EVENT_IDX off) while a memory table without the rings
 * is in place writes nothing to where the rings were: that memory is not
 * the guest's any more, and the old mapping may be gone (the vhost-user
 * fuzz target crashed there: SET_MEM_TABLE, then SET_FEATURES). */
static void test_feature_change_while_rings_unmapped_writes_nothing(void **state)
{
	struct fixture *f = *state;
	start_worker(f, true);
	struct guest_memory *high = memory_without_the_rings(f);
	assert_int_equal(fg_used_flags(&f->g), 0);

	queue_worker_set_memory(f->qw, high); /* the rings are gone */
	queue_worker_set_event_idx(f->qw, false);
	assert_int_equal(queue_worker_stop(f->qw), 0); /* both applied by now */
	assert_int_equal(fg_used_flags(&f->g), 0);     /* no NO_NOTIFY written */
	guest_memory_unref(high);
}

static struct queue_worker_bounce_stats bounce_stats(const struct fixture *f)
{
	struct queue_worker_bounce_stats stats;
	queue_worker_get_bounce_stats(f->qw, &stats);
	return stats;
}

/* Misaligned requests go through bounce buffers: many of them at once,
 * more than the budget, all complete with the right data while the bounce
 * memory held at once stays within the budget. */
static void test_bounce_memory_stays_within_budget(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	const size_t budget = bounce_stats(f).budget;
	const uint32_t len = 256 << 10; /* seg_count_max * seg_size_max: a pooled buffer */
	assert_int_equal(budget, 8u << 20);
	enum { REGIONS = 8, READS = 48 };
	uint64_t bufs[REGIONS];
	uint8_t *expect = malloc((size_t)REGIONS * len);
	for (int i = 0; i < REGIONS; i++) {
		bufs[i] = fg_alloc(&f->g, len, 4096, 8); /* 8 bytes off: bounced */
		fill_pattern(expect + (size_t)i * len, len, (unsigned)i + 1);
		memcpy(fg_ptr(&f->g, bufs[i]), expect + (size_t)i * len, len);
		put_rw(f, VIRTIO_BLK_T_OUT, (uint64_t)i * (len / SECTOR_SIZE), len, bufs[i]);
	}
	run_until(f, REGIONS);
	uint8_t *disk = malloc((size_t)REGIONS * len);
	assert_int_equal(pread(f->disk_fd, disk, (size_t)REGIONS * len, 0), REGIONS * len);
	assert_memory_equal(disk, expect, (size_t)REGIONS * len);
	free(disk);

	/* 48 reads of 256 KiB at once: 12 MiB of bounce memory if nothing held
	 * them back. Reads of one region share its buffer (same bytes). */
	for (int i = 0; i < REGIONS; i++)
		memset(fg_ptr(&f->g, bufs[i]), 0, len);
	struct io ios[READS];
	for (int j = 0; j < READS; j++)
		ios[j] = put_rw(f, VIRTIO_BLK_T_IN, (uint64_t)(j % REGIONS) * (len / SECTOR_SIZE),
				len, bufs[j % REGIONS]);
	run_until(f, REGIONS + READS);
	for (int j = 0; j < READS; j++)
		assert_int_equal(status_of(f, &ios[j]), VIRTIO_BLK_S_OK);
	for (int i = 0; i < REGIONS; i++)
		assert_memory_equal(fg_ptr(&f->g, bufs[i]), expect + (size_t)i * len, len);
	assert_true(bounce_stats(f).peak <= budget);
	assert_true(bounce_stats(f).peak >= len);
	assert_true(bounce_stats(f).waits > 0);
	free(expect);
}

static int setup_big_null(void **state)
{
	struct fixture *f = new_fixture();
	assert_int_equal(bdev_open_null(1u << 20, &f->dev), 0); /* 512 MiB, no storage */
	f->cfg.dev = f->dev;
	*state = f;
	return 0;
}

/* Larger requests get buffers of their own, also within the budget; one
 * larger than the whole budget runs alone rather than failing. */
static void test_large_bounced_requests(void **state)
{
	struct fixture *f = *state;
	start_worker(f, false);
	const size_t budget = bounce_stats(f).budget;
	const uint32_t mib = 1u << 20;
	uint64_t buf = fg_alloc(&f->g, mib, 4096, 8);
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_OUT, 0);
	/* 64 writes of 1 MiB: 64 MiB if nothing held them back. */
	uint64_t st[64];
	for (int i = 0; i < 64; i++) {
		st[i] = fg_status(&f->g);
		struct fake_buf bufs[] = {{hdr, 16, 0}, {buf, mib, 0}, {st[i], 1, W}};
		fg_put(&f->g, fg_chain(&f->g, bufs, 3));
	}
	run_until(f, 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(*(uint8_t *)fg_ptr(&f->g, st[i]), VIRTIO_BLK_S_OK);
	assert_true(bounce_stats(f).peak <= budget);
	assert_true(bounce_stats(f).waits > 0);

	/* 12 MiB in one request (the same guest buffer twelve times), between
	 * small ones: it waits for them, runs alone, and they wait for it. */
	struct fake_buf big[14] = {{hdr, 16, 0}};
	for (int i = 1; i <= 12; i++)
		big[i] = (struct fake_buf){buf, mib, 0};
	uint64_t big_status = fg_status(&f->g);
	big[13] = (struct fake_buf){big_status, 1, W};
	for (int i = 0; i < 4; i++) {
		st[i] = fg_status(&f->g);
		struct fake_buf bufs[] = {{hdr, 16, 0}, {buf, mib, 0}, {st[i], 1, W}};
		fg_put(&f->g, fg_chain(&f->g, bufs, 3));
	}
	fg_put(&f->g, fg_chain(&f->g, big, 14));
	for (int i = 4; i < 8; i++) {
		st[i] = fg_status(&f->g);
		struct fake_buf bufs[] = {{hdr, 16, 0}, {buf, mib, 0}, {st[i], 1, W}};
		fg_put(&f->g, fg_chain(&f->g, bufs, 3));
	}
	run_until(f, 64 + 9);
	assert_int_equal(*(uint8_t *)fg_ptr(&f->g, big_status), VIRTIO_BLK_S_OK);
	for (int i = 0; i < 8; i++)
		assert_int_equal(*(uint8_t *)fg_ptr(&f->g, st[i]), VIRTIO_BLK_S_OK);
	assert_int_equal(bounce_stats(f).peak, 12 * mib);
}

static void test_configuration_errors(void **state)
{
	struct fixture *f = *state;
	struct queue_worker *qw;
	struct queue_worker_config bad = f->cfg;
	bad.max_queue_size = 0;
	assert_int_equal(queue_worker_create(&bad, &qw), -EINVAL);
	bad = f->cfg;
	bad.dev = NULL;
	assert_int_equal(queue_worker_create(&bad, &qw), -EINVAL);

	/* Pinning to a CPU that does not exist is logged and ignored. */
	f->cfg.cpu = 9999;
	assert_int_equal(queue_worker_create(&f->cfg, &f->qw), 0);
	assert_int_equal(queue_worker_set_num(f->qw, 0), -EINVAL);
	assert_int_equal(queue_worker_set_num(f->qw, NUM + 1), -EINVAL);
	assert_int_equal(queue_worker_set_addr(f->qw, FG_DESC + 8, FG_AVAIL, FG_USED), -EINVAL);
	assert_int_equal(queue_worker_set_addr(f->qw, FG_DESC, FG_AVAIL + 1, FG_USED), -EINVAL);
	assert_int_equal(queue_worker_set_addr(f->qw, FG_DESC, FG_AVAIL, FG_USED + 2), -EINVAL);
	/* Nothing set up yet. */
	assert_int_equal(queue_worker_start(f->qw), -EINVAL);
	assert_int_equal(queue_worker_set_num(f->qw, NUM), 0);
	assert_int_equal(queue_worker_set_addr(f->qw, FG_UNMAPPED, FG_AVAIL, FG_USED), 0);
	queue_worker_set_memory(f->qw, f->g.mem);
	/* No kick fd. */
	assert_int_equal(queue_worker_start(f->qw), -EINVAL);
	queue_worker_set_kick_fd(f->qw, dup(f->kick));
	/* Rings outside guest memory. */
	assert_int_equal(queue_worker_start(f->qw), -EFAULT);
	assert_false(queue_worker_started(f->qw));
	assert_int_equal(queue_worker_set_addr(f->qw, FG_DESC, FG_AVAIL, FG_USED), 0);
	fg_set_used_idx(&f->g, 7);
	assert_int_equal(queue_worker_start(f->qw), 0);
	assert_int_equal(queue_worker_start(f->qw), -EBUSY);
	assert_int_equal(queue_worker_set_num(f->qw, NUM), -EBUSY);
	assert_int_equal(queue_worker_set_addr(f->qw, FG_DESC, FG_AVAIL, FG_USED), -EBUSY);
	assert_int_equal(queue_worker_set_base(f->qw, 0), -EBUSY);
	/* The used index in guest memory is where the worker continues. */
	queue_worker_set_enabled(f->qw, true);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 8);
	assert_int_equal(fg_used_elem(&f->g, 7).len, 513);
}

static void test_pinned_worker(void **state)
{
	struct fixture *f = *state;
	f->cfg.cpu = 0;
	start_worker(f, true);
	put_rw(f, VIRTIO_BLK_T_IN, 0, 512, 0);
	run_until(f, 1);
}

int main(void)
{
	log_init(); /* UBIBLK_LOG=debug shows what the workers do */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_read_write_zero_copy, setup_sync_file, teardown),
	    cmocka_unit_test_setup_teardown(test_read_write_zero_copy, setup_uring_file, teardown),
	    cmocka_unit_test_setup_teardown(test_read_write_through_bounce_buffer, setup_sync_file,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_read_write_through_bounce_buffer, setup_uring_file,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_buffer_spanning_regions, setup_uring_file,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_flush_discard_write_zeroes, setup_sync_file,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_flush_discard_write_zeroes, setup_uring_file,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_requests_without_device_io, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_signals_once, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_no_interrupt_flag, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_event_idx_signals, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_polling_suppresses_kicks, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_polling_mode_polls_past_the_window, setup_null,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_sleeping_worker_rearms, setup_uring_file,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_disabled_queue_ignores_kicks, setup_null,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_stop_and_restart, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_waits_for_in_flight_requests,
					    setup_uring_file, teardown),
	    cmocka_unit_test_setup_teardown(test_memory_swap_with_requests_in_flight,
					    setup_uring_file, teardown),
	    cmocka_unit_test_setup_teardown(test_memory_without_the_rings_stops_the_queue,
					    setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_avail_index_stops_the_queue, setup_null,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_chains_do_not_stop_the_queue, setup_null,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_more_heads_than_slots, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_replaced_call_fd_is_signalled, setup_null,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_saturated_blocking_call_fd, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_busy_kernel_does_not_lose_requests,
					    setup_uring_file, teardown),
	    cmocka_unit_test_setup_teardown(test_feature_change_while_rings_unmapped_writes_nothing,
					    setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_completions_while_rings_unmapped_are_kept,
					    setup_uring_file, teardown),
	    cmocka_unit_test_setup_teardown(test_bounce_memory_stays_within_budget,
					    setup_uring_file, teardown),
	    cmocka_unit_test_setup_teardown(test_large_bounced_requests, setup_big_null, teardown),
	    cmocka_unit_test_setup_teardown(test_configuration_errors, setup_null, teardown),
	    cmocka_unit_test_setup_teardown(test_pinned_worker, setup_null, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The I/O-tracking hook in the vhost data plane: a queue worker given a
 * tracker shows its reads, writes and flushes while they are in flight (slot
 * index, sector, sector count), clears them when they complete, counts them,
 * times them (held 20 ms, they take 20 ms), counts refused ones as bad
 * requests, and leaves out what it does not track (DISCARD, WRITE_ZEROES,
 * GET_ID, refused requests). The device under the worker is a "gate" layer over a
 * null device that holds every operation until the test opens it. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "bdev/bdev.h"
#include "common/common.h"
#include "fake_guest.h"
#include "io_tracker/io_tracker.h"
#include "vhost/queue_worker.h"

#define NUM	     64
#define DISK_SECTORS 4096u
#define W	     VRING_DESC_F_WRITE
#define TIMEOUT_MS   5000

/* ---- the gate layer ---- */

struct gate {
	atomic_bool open;
	atomic_uint held; /* operations waiting behind the gate */
	int open_fd;	  /* readable once the gate is open */
};

struct gate_channel {
	struct gate *gate;
	uint64_t ids[NUM * 2];
	int count;
};

static int gate_channel_create(void *layer, struct bdev_channel *self, uint32_t depth, void **out)
{
	struct gate_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->gate = *(struct gate **)layer;
	*out = ch;
	return 0;
}

static void gate_channel_destroy(void *lch)
{
	free(lch);
}

static void hold(struct gate_channel *ch, uint64_t id)
{
	assert_true(ch->count < (int)ARRAY_SIZE(ch->ids));
	ch->ids[ch->count++] = id;
	atomic_fetch_add(&ch->gate->held, 1);
}

static void gate_add_rw(void *lch, bool write, uint64_t sector, const struct iovec *iov, int iovcnt,
			uint64_t bytes, uint64_t id)
{
	hold(lch, id);
}

static void gate_add_flush(void *lch, uint64_t id)
{
	hold(lch, id);
}

static void gate_add_fallocate(void *lch, bool punch_hole, uint64_t sector, uint64_t count,
			       uint64_t id)
{
	hold(lch, id);
}

static int gate_submit(void *lch)
{
	return 0;
}

static int gate_poll(void *lch, struct bdev_completion *out, int max)
{
	struct gate_channel *ch = lch;
	if (!atomic_load(&ch->gate->open))
		return 0;
	int n = 0;
	while (n < max && ch->count > 0) {
		out[n++] = (struct bdev_completion){.id = ch->ids[--ch->count], .result = 0};
		atomic_fetch_sub(&ch->gate->held, 1);
	}
	return n;
}

static int gate_completion_fd(const void *lch)
{
	const struct gate_channel *ch = lch;
	return ch->gate->open_fd;
}

static const struct bdev_layer_ops gate_ops = {
    .channel_create = gate_channel_create,
    .channel_destroy = gate_channel_destroy,
    .add_rw = gate_add_rw,
    .add_flush = gate_add_flush,
    .add_fallocate = gate_add_fallocate,
    .submit = gate_submit,
    .poll = gate_poll,
    .completion_fd = gate_completion_fd,
};

/* ---- fixture ---- */

struct fixture {
	struct fake_guest g;
	struct gate gate;
	struct bdev *null_dev;
	struct bdev *dev;
	struct io_tracker *tracker;
	struct queue_worker *qw;
	int kick;
	int call;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	fake_guest_init(&f->g, NUM);
	f->gate.open_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(f->gate.open_fd >= 0 && f->kick >= 0 && f->call >= 0);
	assert_int_equal(bdev_open_null(DISK_SECTORS, &f->null_dev), 0);
	struct gate *gate = &f->gate;
	assert_int_equal(bdev_layer_open(&gate_ops, &gate, sizeof(gate), f->null_dev, &f->dev), 0);
	f->tracker = io_tracker_create(NUM);
	struct queue_worker_config cfg = {
	    .index = 0,
	    .max_queue_size = NUM,
	    .seg_size_max = 65536,
	    .seg_count_max = 4,
	    .cpu = -1,
	    .device_id = "tracked",
	    .dev = f->dev,
	    .tracker = f->tracker,
	};
	assert_int_equal(queue_worker_create(&cfg, &f->qw), 0);
	queue_worker_set_memory(f->qw, f->g.mem);
	assert_int_equal(queue_worker_set_num(f->qw, NUM), 0);
	assert_int_equal(queue_worker_set_addr(f->qw, FG_DESC, FG_AVAIL, FG_USED), 0);
	queue_worker_set_kick_fd(f->qw, dup(f->kick));
	queue_worker_set_call_fd(f->qw, dup(f->call));
	queue_worker_set_enabled(f->qw, true);
	assert_int_equal(queue_worker_start(f->qw), 0);
	*state = f;
	return 0;
}

static void open_gate(struct fixture *f)
{
	uint64_t one = 1;
	atomic_store(&f->gate.open, true);
	assert_int_equal(write(f->gate.open_fd, &one, sizeof(one)), sizeof(one));
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	open_gate(f); /* the worker finishes what it holds before it stops */
	queue_worker_destroy(f->qw);
	bdev_close(f->dev);
	bdev_close(f->null_dev);
	io_tracker_destroy(f->tracker);
	close(f->gate.open_fd);
	close(f->kick);
	close(f->call);
	fake_guest_fini(&f->g);
	free(f);
	return 0;
}

/* ---- driver side ---- */

static uint64_t ms_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - start->tv_sec) * 1000 +
	       (uint64_t)((now.tv_nsec - start->tv_nsec) / 1000000);
}

static void publish_and_kick(struct fixture *f)
{
	uint64_t one = 1;
	fg_publish(&f->g);
	assert_int_equal(write(f->kick, &one, sizeof(one)), sizeof(one));
}

static void wait_until(struct fixture *f, bool (*done)(struct fixture *, unsigned), unsigned arg,
		       const char *what)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (!done(f, arg)) {
		if (ms_since(&start) > TIMEOUT_MS)
			fail_msg("timed out waiting for %s", what);
		usleep(200);
	}
}

static bool held_is(struct fixture *f, unsigned n)
{
	return atomic_load(&f->gate.held) == n;
}

static bool used_is(struct fixture *f, unsigned n)
{
	return fg_used_idx(&f->g) == n;
}

static void put_rw(struct fixture *f, uint32_t type, uint64_t sector, uint32_t len)
{
	uint64_t hdr = fg_header(&f->g, type, sector);
	uint64_t data = fg_alloc(&f->g, len, 4096, 0);
	uint64_t status = fg_status(&f->g);
	struct fake_buf bufs[] = {
	    {hdr, 16, 0}, {data, len, type == VIRTIO_BLK_T_IN ? W : 0}, {status, 1, W}};
	fg_put(&f->g, fg_chain(&f->g, bufs, 3));
}

static void put_header_only(struct fixture *f, uint32_t type, uint64_t sector)
{
	uint64_t hdr = fg_header(&f->g, type, sector);
	uint64_t status = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {status, 1, W}};
	fg_put(&f->g, fg_chain(&f->g, bufs, 2));
}

static void put_discard(struct fixture *f, uint32_t type, uint64_t sector, uint32_t sectors)
{
	uint64_t hdr = fg_header(&f->g, type, 0);
	uint64_t seg = fg_alloc(&f->g, 16, 16, 0);
	struct virtio_blk_discard_write_zeroes *s = fg_ptr(&f->g, seg);
	s->sector = sector;
	s->num_sectors = sectors;
	s->flags = 0;
	uint64_t status = fg_status(&f->g);
	struct fake_buf bufs[] = {{hdr, 16, 0}, {seg, 16, 0}, {status, 1, W}};
	fg_put(&f->g, fg_chain(&f->g, bufs, 3));
}

static void assert_entry(const struct io_tracker_entry *e, uint32_t slot, enum io_kind kind,
			 uint64_t sector, uint32_t count)
{
	assert_int_equal(e->slot, slot);
	assert_int_equal(e->kind, kind);
	assert_int_equal(e->sector, sector);
	assert_int_equal(e->count, count);
}

/* ---- tests ---- */

static void test_in_flight_requests_are_shown(void **state)
{
	struct fixture *f = *state;
	put_rw(f, VIRTIO_BLK_T_IN, 8, 4096);
	put_rw(f, VIRTIO_BLK_T_OUT, 100, 1024);
	put_header_only(f, VIRTIO_BLK_T_FLUSH, 0);
	put_discard(f, VIRTIO_BLK_T_DISCARD, 16, 8);
	put_discard(f, VIRTIO_BLK_T_WRITE_ZEROES, 32, 8);
	publish_and_kick(f);
	wait_until(f, held_is, 5, "five operations at the gate");

	struct io_tracker_entry e[NUM];
	size_t n = io_tracker_snapshot(f->tracker, e, NUM);
	assert_int_equal(n, 3); /* DISCARD and WRITE_ZEROES are not tracked */
	assert_entry(&e[0], 0, IO_KIND_READ, 8, 8);
	assert_entry(&e[1], 1, IO_KIND_WRITE, 100, 2);
	assert_entry(&e[2], 2, IO_KIND_FLUSH, 0, 0);
	struct io_tracker_metrics m;
	io_tracker_read_metrics(f->tracker, &m);
	assert_int_equal(m.in_flight, 3);
	assert_int_equal(m.duration[IO_KIND_READ].sum_ns, 0);

	/* Held at the gate for 20 ms at least: their durations say so. */
	nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
	open_gate(f);
	wait_until(f, used_is, 5, "five used entries");
	assert_int_equal(io_tracker_snapshot(f->tracker, e, NUM), 0);
	io_tracker_read_metrics(f->tracker, &m);
	assert_int_equal(m.in_flight, 0);
	for (int kind = IO_KIND_READ; kind <= IO_KIND_FLUSH; kind++) {
		uint64_t count = 0;
		for (int b = 0; b <= IO_TRACKER_BUCKETS; b++)
			count += m.duration[kind].buckets[b];
		assert_int_equal(count, 1);
		assert_true(m.duration[kind].sum_ns >= 20000000u);
		/* Nothing at or under 16.384 ms (bucket 11). */
		for (int b = 0; b <= 11; b++)
			assert_int_equal(m.duration[kind].buckets[b], 0);
	}
	for (int k = 0; k < IO_ERROR_KINDS; k++)
		assert_int_equal(m.errors[k], 0);

	struct io_tracker_counters c;
	io_tracker_read_counters(f->tracker, &c);
	assert_int_equal(c.read_ops, 1);
	assert_int_equal(c.bytes_read, 4096);
	assert_int_equal(c.write_ops, 1);
	assert_int_equal(c.bytes_written, 1024);
	assert_int_equal(c.flush_ops, 1);
}

/* Requests that never reach the device are neither shown nor counted. */
static void test_untracked_requests(void **state)
{
	struct fixture *f = *state;
	open_gate(f);
	uint64_t hdr = fg_header(&f->g, VIRTIO_BLK_T_GET_ID, 0);
	uint64_t id = fg_alloc(&f->g, 20, 16, 0);
	uint64_t st = fg_status(&f->g);
	struct fake_buf get_id[] = {{hdr, 16, 0}, {id, 20, W}, {st, 1, W}};
	fg_put(&f->g, fg_chain(&f->g, get_id, 3));
	put_rw(f, VIRTIO_BLK_T_IN, DISK_SECTORS, 512); /* past the end: refused */
	put_header_only(f, 0xdead, 0);		       /* unsupported */
	put_header_only(f, VIRTIO_BLK_T_IN, 0);	       /* no data: completes at once */
	publish_and_kick(f);
	wait_until(f, used_is, 4, "four used entries");
	struct io_tracker_counters c;
	io_tracker_read_counters(f->tracker, &c);
	assert_int_equal(c.read_ops + c.write_ops + c.flush_ops, 0);
	assert_int_equal(c.bytes_read + c.bytes_written, 0);
	/* The refused two are bad requests; GET_ID and the empty read are fine. */
	struct io_tracker_metrics m;
	io_tracker_read_metrics(f->tracker, &m);
	assert_int_equal(m.errors[IO_ERROR_BAD_REQUEST], 2);
	assert_int_equal(m.errors[IO_ERROR_IO], 0);
	assert_int_equal(m.errors[IO_ERROR_FAILED_STRIPE], 0);
	assert_int_equal(m.in_flight, 0);
}

/* Many requests over time: slots are reused and the counters add up. */
static void test_counters_over_many_requests(void **state)
{
	struct fixture *f = *state;
	open_gate(f);
	unsigned total = 0;
	for (unsigned round = 0; round < 8; round++) {
		for (unsigned i = 0; i < 16; i++)
			put_rw(f, i % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, i * 8, 512 * (i + 1));
		total += 16;
		publish_and_kick(f);
		wait_until(f, used_is, total, "used entries");
	}
	struct io_tracker_counters c;
	io_tracker_read_counters(f->tracker, &c);
	assert_int_equal(c.read_ops, 64);
	assert_int_equal(c.write_ops, 64);
	/* Per round: reads of 1,3,...,15 sectors and writes of 2,4,...,16. */
	assert_int_equal(c.bytes_read, 8ull * 64 * 512);
	assert_int_equal(c.bytes_written, 8ull * 72 * 512);
	struct io_tracker_entry e[NUM];
	assert_int_equal(io_tracker_snapshot(f->tracker, e, NUM), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_in_flight_requests_are_shown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_untracked_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_counters_over_many_requests, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

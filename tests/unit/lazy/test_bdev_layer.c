/* Stacked devices (bdev_layer_open) with a pass-through layer over a file:
 * the layer sees operations in sectors, bdev.c's common checks happen before
 * it, its own completions and bdev_layer_complete() ones come back through
 * bdev_poll, and bdev_close frees the layer's context. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev/bdev.h"
#include "uring_submit_faults.h"
#include "bdev_test_util.h"
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_SECTORS  256u
#define REFUSE_SECTOR 200u /* the test layer fails requests at this sector itself */

struct seen {
	unsigned rw, flushes, fallocates, channels_open;
	bool last_write, last_punch_hole;
	uint64_t last_sector, last_bytes, last_count;
	/* Ids the layer completes with bdev_layer_complete() during its next
	 * poll, as a layer that finds a queued request failed would. */
	uint64_t complete_in_poll[4];
	int complete_in_poll_count;
};

struct pass_layer {
	struct bdev *below;
	struct seen *seen;
};

struct pass_channel {
	struct bdev_channel *self;
	struct bdev_channel *below;
	struct seen *seen;
};

static int pass_channel_create(void *layer, struct bdev_channel *self, uint32_t depth, void **out)
{
	const struct pass_layer *l = layer;
	struct pass_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	int rc = bdev_channel_create(l->below, depth, &ch->below);
	if (rc < 0) {
		free(ch);
		return rc;
	}
	ch->self = self;
	ch->seen = l->seen;
	ch->seen->channels_open++;
	*out = ch;
	return 0;
}

static void pass_channel_destroy(void *lch)
{
	struct pass_channel *ch = lch;
	ch->seen->channels_open--;
	bdev_channel_destroy(ch->below);
	free(ch);
}

static void pass_add_rw(void *lch, bool write, uint64_t sector, const struct iovec *iov, int iovcnt,
			uint64_t bytes, uint64_t id)
{
	struct pass_channel *ch = lch;
	ch->seen->rw++;
	ch->seen->last_write = write;
	ch->seen->last_sector = sector;
	ch->seen->last_bytes = bytes;
	if (sector == REFUSE_SECTOR) {
		bdev_layer_complete(ch->self, id, -EIO);
		return;
	}
	if (write)
		bdev_add_writev(ch->below, sector, iov, iovcnt, id);
	else
		bdev_add_readv(ch->below, sector, iov, iovcnt, id);
}

static void pass_add_flush(void *lch, uint64_t id)
{
	struct pass_channel *ch = lch;
	ch->seen->flushes++;
	bdev_add_flush(ch->below, id);
}

static void pass_add_fallocate(void *lch, bool punch_hole, uint64_t sector, uint64_t count,
			       uint64_t id)
{
	struct pass_channel *ch = lch;
	ch->seen->fallocates++;
	ch->seen->last_punch_hole = punch_hole;
	ch->seen->last_sector = sector;
	ch->seen->last_count = count;
	if (punch_hole)
		bdev_add_discard(ch->below, sector, count, id);
	else
		bdev_add_write_zeroes(ch->below, sector, count, false, id);
}

static int pass_submit(void *lch)
{
	struct pass_channel *ch = lch;
	return bdev_submit(ch->below);
}

static int pass_poll(void *lch, struct bdev_completion *out, int max)
{
	struct pass_channel *ch = lch;
	for (int i = 0; i < ch->seen->complete_in_poll_count; i++)
		bdev_layer_complete(ch->self, ch->seen->complete_in_poll[i], -EIO);
	ch->seen->complete_in_poll_count = 0;
	return bdev_poll(ch->below, out, max);
}

static int pass_completion_fd(const void *lch)
{
	const struct pass_channel *ch = lch;
	return bdev_completion_fd(ch->below);
}

static bool pass_needs_submit(const void *lch)
{
	const struct pass_channel *ch = lch;
	return bdev_needs_submit(ch->below);
}

static const struct bdev_layer_ops pass_ops = {
    .channel_create = pass_channel_create,
    .channel_destroy = pass_channel_destroy,
    .add_rw = pass_add_rw,
    .add_flush = pass_add_flush,
    .add_fallocate = pass_add_fallocate,
    .submit = pass_submit,
    .poll = pass_poll,
    .completion_fd = pass_completion_fd,
    .needs_submit = pass_needs_submit,
};

struct fixture {
	char path[TEST_PATH_MAX];
	struct bdev *file;
	struct bdev *dev; /* the layer */
	struct bdev_channel *ch;
	struct seen seen;
	unsigned char *buf;
};

static struct fixture *open_fixture(enum bdev_engine engine, bool read_only)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	make_test_file(f->path, FILE_SECTORS * SECTOR_SIZE, 0x11);
	struct bdev_file_options o = {.path = f->path,
				      .engine = engine,
				      .read_only = read_only,
				      .direct = true,
				      .queue_depth = 8};
	struct error err = {0};
	assert_int_equal(bdev_open_file(&o, &f->file, &err), 0);
	struct pass_layer l = {.below = f->file, .seen = &f->seen};
	assert_int_equal(bdev_layer_open(&pass_ops, &l, sizeof(l), f->file, &f->dev), 0);
	assert_int_equal(bdev_channel_create(f->dev, 0, &f->ch), 0);
	f->buf = buffer_alloc(BUFFER_ALIGNMENT, 64 * 1024);
	assert_non_null(f->buf);
	return f;
}

static int setup_uring(void **state)
{
	*state = open_fixture(BDEV_ENGINE_IO_URING, false);
	return 0;
}

static int setup_sync(void **state)
{
	*state = open_fixture(BDEV_ENGINE_SYNC, false);
	return 0;
}

static int setup_read_only(void **state)
{
	*state = open_fixture(BDEV_ENGINE_IO_URING, true);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	bdev_channel_destroy(f->ch);
	assert_int_equal(f->seen.channels_open, 0);
	bdev_close(f->dev);
	bdev_close(f->file);
	unlink(f->path);
	buffer_free(f->buf);
	free(f);
	return 0;
}

static void test_properties_come_from_below(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(bdev_sector_count(f->dev), FILE_SECTORS);
	assert_int_equal(bdev_queue_depth(f->dev), 8);
	assert_int_equal(bdev_buffer_alignment(f->dev), bdev_buffer_alignment(f->file));
	assert_false(bdev_is_read_only(f->dev));
	assert_int_equal(f->seen.channels_open, 1);
}

static void test_write_then_read_through_the_layer(void **state)
{
	struct fixture *f = *state;
	fill_random(f->buf, 8192, 7);
	struct iovec w[2] = {{f->buf, 4096}, {f->buf + 4096, 4096}};
	bdev_add_writev(f->ch, 16, w, 2, 1);
	assert_int_equal(submit_and_wait(f->ch, 1), 0);
	assert_true(f->seen.last_write);
	assert_int_equal(f->seen.last_sector, 16);
	assert_int_equal(f->seen.last_bytes, 8192);

	unsigned char *back = f->buf + 16384;
	memset(back, 0, 8192);
	struct iovec r = {back, 8192};
	bdev_add_readv(f->ch, 16, &r, 1, 2);
	assert_int_equal(submit_and_wait(f->ch, 2), 0);
	assert_false(f->seen.last_write);
	assert_memory_equal(back, f->buf, 8192);
	assert_false(bdev_busy(f->ch));

	bdev_add_flush(f->ch, 3);
	assert_int_equal(submit_and_wait(f->ch, 3), 0);
	assert_int_equal(f->seen.flushes, 1);
}

static void test_completion_fd_is_the_layers(void **state)
{
	struct fixture *f = *state;
	assert_true(bdev_completion_fd(f->ch) >= 0);
}

static void test_sync_below_has_no_completion_fd(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(bdev_completion_fd(f->ch), -1);
	struct iovec r = {f->buf, 4096};
	bdev_add_readv(f->ch, 0, &r, 1, 9);
	assert_int_equal(submit_and_wait(f->ch, 9), 0);
	assert_int_equal(f->buf[0], 0x11);
}

/* bdev.c's checks run before the layer: it never sees these. */
static void test_common_checks_before_the_layer(void **state)
{
	struct fixture *f = *state;
	struct bdev_completion c[4];
	struct iovec empty = {f->buf, 0};
	bdev_add_readv(f->ch, 0, &empty, 1, 1);
	bdev_add_discard(f->ch, 0, 0, 2);
	struct iovec huge = {f->buf, 4096};
	bdev_add_readv(f->ch, UINT64_MAX >> 9, &huge, 1, 3);
	assert_int_equal(bdev_poll(f->ch, c, 4), 3);
	assert_int_equal(c[0].id, 1);
	assert_int_equal(c[0].result, 0);
	assert_int_equal(c[1].id, 2);
	assert_int_equal(c[1].result, 0);
	assert_int_equal(c[2].id, 3);
	assert_int_equal(c[2].result, -EINVAL);
	assert_int_equal(f->seen.rw, 0);
	assert_int_equal(f->seen.fallocates, 0);
	assert_false(bdev_busy(f->ch));
}

static void test_depth_admission_before_the_layer(void **state)
{
	struct fixture *f = *state;
	struct bdev_channel *ch;
	assert_int_equal(bdev_channel_create(f->dev, 2, &ch), 0);
	struct iovec r[3] = {{f->buf, 4096}, {f->buf + 4096, 4096}, {f->buf + 8192, 4096}};
	for (int i = 0; i < 3; i++)
		bdev_add_readv(ch, (uint64_t)i * 8, &r[i], 1, (uint64_t)i);
	assert_int_equal(f->seen.rw, 2);
	struct bdev_completion c[3];
	assert_int_equal(bdev_submit(ch), 0);
	wait_completions(ch, c, 3);
	int again = 0, ok = 0;
	for (int i = 0; i < 3; i++) {
		if (c[i].result == -EAGAIN) {
			assert_int_equal(c[i].id, 2);
			again++;
		} else if (c[i].result == 0) {
			ok++;
		}
	}
	assert_int_equal(again, 1);
	assert_int_equal(ok, 2);
	assert_false(bdev_busy(ch));
	bdev_channel_destroy(ch);
}

static void test_read_only_below_refuses_writes(void **state)
{
	struct fixture *f = *state;
	assert_true(bdev_is_read_only(f->dev));
	struct iovec w = {f->buf, 4096};
	bdev_add_writev(f->ch, 0, &w, 1, 5);
	bdev_add_write_zeroes(f->ch, 0, 8, false, 6);
	struct bdev_completion c[2];
	assert_int_equal(bdev_poll(f->ch, c, 2), 2);
	assert_int_equal(c[0].result, -EBADF);
	assert_int_equal(c[1].result, -EBADF);
	assert_int_equal(f->seen.rw + f->seen.fallocates, 0);
}

/* A completion the layer makes with bdev_layer_complete(), whether while
 * adding or while polling, comes back through bdev_poll and releases its place
 * in the depth. */
static void test_layer_completions(void **state)
{
	struct fixture *f = *state;
	struct iovec r = {f->buf, 4096};
	bdev_add_readv(f->ch, REFUSE_SECTOR, &r, 1, 40);
	assert_true(bdev_busy(f->ch));
	struct bdev_completion c[2];
	assert_int_equal(bdev_poll(f->ch, c, 2), 1);
	assert_int_equal(c[0].id, 40);
	assert_int_equal(c[0].result, -EIO);
	assert_false(bdev_busy(f->ch));

	/* Admitted (counted) first, completed by the layer in its poll. */
	bdev_add_readv(f->ch, 0, &r, 1, 41);
	assert_int_equal(submit_and_wait(f->ch, 41), 0);
	f->seen.complete_in_poll[0] = 42;
	f->seen.complete_in_poll_count = 1;
	assert_int_equal(bdev_poll(f->ch, c, 2), 1);
	assert_int_equal(c[0].id, 42);
	assert_int_equal(c[0].result, -EIO);
}

static void test_fallocate_modes(void **state)
{
	struct fixture *f = *state;
	bdev_add_discard(f->ch, 8, 8, 1);
	assert_int_equal(submit_and_wait(f->ch, 1), 0);
	assert_true(f->seen.last_punch_hole);
	assert_int_equal(f->seen.last_sector, 8);
	assert_int_equal(f->seen.last_count, 8);
	bdev_add_write_zeroes(f->ch, 32, 16, false, 2);
	assert_int_equal(submit_and_wait(f->ch, 2), 0);
	assert_false(f->seen.last_punch_hole);
	assert_int_equal(f->seen.last_sector, 32);
	assert_int_equal(f->seen.last_count, 16);
	bdev_add_write_zeroes(f->ch, 64, 8, true, 3);
	assert_int_equal(submit_and_wait(f->ch, 3), 0);
	assert_true(f->seen.last_punch_hole);

	struct iovec r = {f->buf, 16 * SECTOR_SIZE};
	bdev_add_readv(f->ch, 32, &r, 1, 4);
	assert_int_equal(submit_and_wait(f->ch, 4), 0);
	for (unsigned i = 0; i < 16 * SECTOR_SIZE; i++)
		assert_int_equal(f->buf[i], 0);
	bdev_add_readv(f->ch, 48, &r, 1, 5);
	assert_int_equal(submit_and_wait(f->ch, 5), 0);
	assert_int_equal(f->buf[0], 0x11);
}

/* A refused submission below shows through bdev_needs_submit() of the layer
 * until a poll gets it to the kernel. */
static void test_needs_submit_from_below(void **state)
{
	struct fixture *f = *state;
	assert_false(bdev_needs_submit(f->ch));
	__atomic_store_n(&bdev_uring_fail_submits, 1, __ATOMIC_RELAXED);
	struct iovec r = {f->buf, 4096};
	bdev_add_readv(f->ch, 0, &r, 1, 1);
	assert_int_equal(bdev_submit(f->ch), 0);
	assert_true(bdev_needs_submit(f->ch));
	struct bdev_completion c;
	int n = 0;
	/* A time limit, not a spin count: under load the disk may take a while. */
	uint64_t deadline = now_ns() + 10ull * 1000000000ull;
	while (n == 0) {
		assert_true(now_ns() < deadline);
		n = bdev_poll(f->ch, &c, 1);
	}
	assert_int_equal(c.id, 1);
	assert_int_equal(c.result, 0);
	assert_false(bdev_needs_submit(f->ch));
	assert_false(bdev_busy(f->ch));
}

static void test_open_checks_arguments(void **state)
{
	struct bdev *below, *dev = NULL;
	assert_int_equal(bdev_open_null(64, &below), 0);
	struct bdev_layer_ops incomplete = pass_ops;
	incomplete.poll = NULL;
	assert_int_equal(bdev_layer_open(&incomplete, NULL, 0, below, &dev), -EINVAL);
	assert_int_equal(bdev_layer_open(&pass_ops, NULL, 0, NULL, &dev), -EINVAL);
	assert_int_equal(bdev_layer_open(&pass_ops, NULL, 8, below, &dev), -EINVAL);
	assert_null(dev);
	/* A context-free layer is fine. */
	assert_int_equal(bdev_layer_open(&pass_ops, NULL, 0, below, &dev), 0);
	assert_int_equal(bdev_sector_count(dev), 64);
	bdev_close(dev);
	bdev_close(below);
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_properties_come_from_below, setup_uring, teardown),
	    cmocka_unit_test_setup_teardown(test_write_then_read_through_the_layer, setup_uring,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_write_then_read_through_the_layer, setup_sync,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_completion_fd_is_the_layers, setup_uring,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_sync_below_has_no_completion_fd, setup_sync,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_common_checks_before_the_layer, setup_uring,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_depth_admission_before_the_layer, setup_uring,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_read_only_below_refuses_writes, setup_read_only,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_layer_completions, setup_uring, teardown),
	    cmocka_unit_test_setup_teardown(test_fallocate_modes, setup_uring, teardown),
	    cmocka_unit_test_setup_teardown(test_needs_submit_from_below, setup_uring, teardown),
	    cmocka_unit_test(test_open_checks_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

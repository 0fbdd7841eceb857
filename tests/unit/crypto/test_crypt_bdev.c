/* The crypt layer over real files, with io_uring and the sync engine: what
 * reaches the file is exactly the independent reference's ciphertext, reads
 * come back as plaintext whatever the iovec layout, the caller's write
 * buffers are never touched, large and many writes go through the bounded
 * bounce pool, write-zeroes and discard store encrypted zeroes, and failed
 * reads are returned without being decrypted. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "crypt_test_util.h"
#include "crypto/crypto.h"
#include "xts_reference.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_SECTORS 16384u /* 8 MiB */
#define FILL	     0xEE

struct fixture {
	enum bdev_engine engine;
	char path[TEST_PATH_MAX];
	struct bdev *file, *crypt;
	struct bdev_channel *ch;
};

static struct fixture *setup_with(void **state, bool direct, uint32_t depth)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->engine = *state ? *(enum bdev_engine *)*state : BDEV_ENGINE_IO_URING;
	make_test_file(f->path, (uint64_t)FILE_SECTORS * SECTOR_SIZE, FILL);
	f->file = open_test_file(f->path, f->engine, direct, false, 64);
	f->crypt = open_test_crypt(f->file);
	assert_int_equal(bdev_channel_create(f->crypt, depth, &f->ch), 0);
	*state = f;
	return f;
}

static void teardown_fixture(struct fixture *f)
{
	bdev_channel_destroy(f->ch);
	bdev_close(f->crypt);
	bdev_close(f->file);
	unlink(f->path);
	free(f);
}

static uint8_t *aligned(size_t bytes)
{
	uint8_t *p = buffer_alloc(BUFFER_ALIGNMENT, bytes);
	assert_non_null(p);
	return p;
}

static void assert_untouched(const char *path, uint64_t sector, uint64_t count)
{
	uint8_t *raw = malloc(count * SECTOR_SIZE);
	assert_non_null(raw);
	read_raw(path, sector, count, raw);
	for (size_t i = 0; i < count * SECTOR_SIZE; i++)
		if (raw[i] != FILL)
			fail_msg("byte %zu past sector %llu was changed", i,
				 (unsigned long long)sector);
	free(raw);
}

/* Multi-iovec writes and reads (O_DIRECT-aligned segments of several
 * sizes); the file holds the reference's ciphertext and nothing else. */
static void round_trip_matches_reference(void **state)
{
	struct fixture *f = setup_with(state, true, 16);
	enum { SECTORS = 40 };
	uint8_t *plain = aligned(SECTORS * SECTOR_SIZE), *back = aligned(SECTORS * SECTOR_SIZE);
	fill_random(plain, SECTORS * SECTOR_SIZE, 1);
	struct iovec wr[] = {{plain, 512},
			     {plain + 512, 4096},
			     {plain + 4608, 1024},
			     {plain + 5632, SECTORS * SECTOR_SIZE - 5632}};
	assert_int_equal(do_rw(f->ch, true, 1000, wr, 4, 1), 0);
	struct iovec rd[] = {{back, 3072}, {back + 3072, 512}, {back + 3584, SECTORS * 512 - 3584}};
	assert_int_equal(do_rw(f->ch, false, 1000, rd, 3, 2), 0);
	assert_memory_equal(back, plain, SECTORS * SECTOR_SIZE);
	assert_file_encrypts(f->path, 1000, SECTORS, plain);
	assert_untouched(f->path, 990, 10);
	assert_untouched(f->path, 1000 + SECTORS, 10);
	/* The same plaintext in two places gives different ciphertext. */
	assert_int_equal(do_one(f->ch, true, 2000, plain, 512), 0);
	assert_int_equal(do_one(f->ch, true, 2001, plain, 512), 0);
	uint8_t raw[1024];
	read_raw(f->path, 2000, 2, raw);
	assert_memory_not_equal(raw, raw + 512, 512);
	/* Last sector of the device. */
	assert_int_equal(do_one(f->ch, true, FILE_SECTORS - 1, plain, 512), 0);
	assert_file_encrypts(f->path, FILE_SECTORS - 1, 1, plain);
	buffer_free(plain);
	buffer_free(back);
	teardown_fixture(f);
}

/* Writes are encrypted into the layer's own pages: the caller's buffer
 * still holds the plaintext afterwards (a guest must never see ciphertext in
 * its own memory). */
static void write_leaves_caller_buffer_plaintext(void **state)
{
	struct fixture *f = setup_with(state, true, 4);
	size_t bytes = 300 * 1024;
	uint8_t *buf = aligned(bytes), *copy = malloc(bytes);
	assert_non_null(copy);
	fill_random(buf, bytes, 2);
	memcpy(copy, buf, bytes);
	assert_int_equal(do_one(f->ch, true, 64, buf, bytes), 0);
	assert_memory_equal(buf, copy, bytes);
	assert_file_encrypts(f->path, 64, bytes / SECTOR_SIZE, copy);
	buffer_free(buf);
	free(copy);
	teardown_fixture(f);
}

/* Without O_DIRECT, iovecs may be any size at any address as long as they
 * add up to whole sectors: sectors straddle segments on both paths. */
static void unaligned_iovecs(void **state)
{
	struct fixture *f = setup_with(state, false, 8);
	enum { BYTES = 6 * 512 };
	uint8_t *plain = malloc(BYTES), *mem = malloc(BYTES + 64);
	assert_non_null(plain);
	assert_non_null(mem);
	fill_random(plain, BYTES, 3);
	/* Writes from odd addresses, segments 1, 511, 700, 0, 300, ... bytes. */
	uint8_t *src = mem + 3;
	memcpy(src, plain, BYTES);
	size_t wl[] = {1, 511, 700, 0, 300, 1, 1023, 536};
	struct iovec wr[8];
	size_t at = 0;
	for (int i = 0; i < 8; i++) {
		wr[i] = (struct iovec){src + at, wl[i]};
		at += wl[i];
	}
	assert_int_equal(at, BYTES);
	assert_int_equal(do_rw(f->ch, true, 7, wr, 8, 1), 0);
	assert_memory_equal(src, plain, BYTES);
	assert_file_encrypts(f->path, 7, BYTES / SECTOR_SIZE, plain);
	/* Reads into other odd segments. */
	memset(mem, 0, BYTES + 64);
	uint8_t *dst = mem + 17;
	size_t rl[] = {513, 2, 509, 0, 1000, 24, 1024, 0};
	struct iovec rd[8];
	at = 0;
	for (int i = 0; i < 8; i++) {
		rd[i] = (struct iovec){dst + at, rl[i]};
		at += rl[i];
	}
	assert_int_equal(at, BYTES);
	assert_int_equal(do_rw(f->ch, false, 7, rd, 8, 2), 0);
	assert_memory_equal(dst, plain, BYTES);
	/* The bytes around the destination are left alone. */
	for (int i = 0; i < 17; i++)
		assert_int_equal(mem[i], 0);
	free(plain);
	free(mem);
	teardown_fixture(f);
}

static void partial_sectors_are_refused(void **state)
{
	struct fixture *f = setup_with(state, false, 4);
	uint8_t buf[1024] = {0};
	struct iovec iov[] = {{buf, 700}};
	assert_int_equal(do_rw(f->ch, true, 0, iov, 1, 1), -EINVAL);
	assert_int_equal(do_rw(f->ch, false, 0, iov, 1, 2), -EINVAL);
	assert_untouched(f->path, 0, 2);
	teardown_fixture(f);
}

/* A single write larger than the whole bounce pool (a depth-1 channel has
 * the smallest), then more concurrent writes than the pool holds: they wait
 * for pages, in order, and every byte lands encrypted. */
static void writes_larger_than_the_pool(void **state)
{
	struct fixture *f = setup_with(state, true, 1);
	size_t big = 3u * 1024 * 1024 + 512;
	uint8_t *plain = aligned(8u * 1024 * 1024), *back = aligned(big);
	fill_random(plain, 8u * 1024 * 1024, 4);
	assert_int_equal(do_one(f->ch, true, 3, plain, big), 0);
	assert_int_equal(do_one(f->ch, false, 3, back, big), 0);
	assert_memory_equal(back, plain, big);
	assert_file_encrypts(f->path, 3, big / SECTOR_SIZE, plain);
	bdev_channel_destroy(f->ch);

	/* Depth 8: a 1 MiB pool, eight 1 MiB writes at once. */
	assert_int_equal(bdev_channel_create(f->crypt, 8, &f->ch), 0);
	enum { WRITES = 8 };
	const size_t each = 1024 * 1024;
	struct iovec iov[WRITES]; /* valid until the completions, as bdev.h asks */
	for (int i = 0; i < WRITES; i++) {
		iov[i] = (struct iovec){plain + i * each, each};
		bdev_add_writev(f->ch, (uint64_t)i * (each / SECTOR_SIZE), &iov[i], 1, 100 + i);
	}
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c[WRITES];
	wait_strictly(f->ch, c, WRITES);
	bool seen[WRITES] = {false};
	for (int i = 0; i < WRITES; i++) {
		assert_int_equal(c[i].result, 0);
		assert_true(c[i].id >= 100 && c[i].id < 100 + WRITES);
		assert_false(seen[c[i].id - 100]);
		seen[c[i].id - 100] = true;
	}
	assert_file_encrypts(f->path, 0, WRITES * each / SECTOR_SIZE, plain);
	buffer_free(plain);
	buffer_free(back);
	teardown_fixture(f);
}

/* Many small writes and reads in flight at once (the vhost pattern). */
static void many_requests_in_flight(void **state)
{
	struct fixture *f = setup_with(state, true, 128);
	enum { N = 128, BS = 4096 };
	uint8_t *plain = aligned(N * BS), *back = aligned(N * BS);
	fill_random(plain, N * BS, 5);
	struct iovec iov[N];
	for (int i = 0; i < N; i++) {
		/* Scattered: block i goes to slot (i * 37) % N. */
		uint64_t slot = (uint64_t)(i * 37 % N);
		iov[i] = (struct iovec){plain + slot * BS, BS};
		bdev_add_writev(f->ch, slot * (BS / SECTOR_SIZE), &iov[i], 1, i);
	}
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c[N];
	wait_strictly(f->ch, c, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(c[i].result, 0);
	for (int i = 0; i < N; i++) {
		iov[i] = (struct iovec){back + (uint64_t)i * BS, BS};
		bdev_add_readv(f->ch, (uint64_t)i * (BS / SECTOR_SIZE), &iov[i], 1, 1000 + i);
	}
	assert_int_equal(bdev_submit(f->ch), 0);
	wait_strictly(f->ch, c, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(c[i].result, 0);
	assert_memory_equal(back, plain, N * BS);
	assert_file_encrypts(f->path, 0, N * BS / SECTOR_SIZE, plain);
	buffer_free(plain);
	buffer_free(back);
	teardown_fixture(f);
}

static int fallocate_op(struct bdev_channel *ch, int kind, uint64_t sector, uint64_t count)
{
	if (kind == 0)
		bdev_add_discard(ch, sector, count, 5);
	else
		bdev_add_write_zeroes(ch, sector, count, kind == 2, 5);
	assert_int_equal(bdev_submit(ch), 0);
	struct bdev_completion c;
	wait_strictly(ch, &c, 1);
	assert_int_equal(c.id, 5);
	return c.result;
}

/* Discard, write-zeroes and write-zeroes with unmap all read back as zeroes
 * and leave encrypted zeroes in the file (a hole would decrypt to garbage).
 * The ranges cross the pool size to exercise the parts. */
static void zeroes_are_stored_encrypted(void **state)
{
	struct fixture *f = setup_with(state, true, 4);
	const uint64_t region = 3000; /* sectors, ~1.5 MiB */
	uint8_t *data = aligned(region * SECTOR_SIZE), *zero = aligned(region * SECTOR_SIZE),
		*back = aligned(region * SECTOR_SIZE);
	for (int kind = 0; kind < 3; kind++) {
		uint64_t base = (uint64_t)kind * 4000;
		fill_random(data, region * SECTOR_SIZE, 6 + kind);
		assert_int_equal(do_one(f->ch, true, base, data, region * SECTOR_SIZE), 0);
		assert_int_equal(fallocate_op(f->ch, kind, base + 100, region - 200), 0);
		assert_int_equal(do_one(f->ch, false, base, back, region * SECTOR_SIZE), 0);
		assert_memory_equal(back, data, 100 * SECTOR_SIZE);
		assert_memory_equal(back + 100 * SECTOR_SIZE, zero, (region - 200) * SECTOR_SIZE);
		assert_memory_equal(back + (region - 100) * SECTOR_SIZE,
				    data + (region - 100) * SECTOR_SIZE, 100 * SECTOR_SIZE);
		assert_file_encrypts(f->path, base + 100, region - 200, zero);
		assert_file_encrypts(f->path, base, 100, data);
	}
	buffer_free(data);
	buffer_free(zero);
	buffer_free(back);
	teardown_fixture(f);
}

static void flush_passes_through(void **state)
{
	struct fixture *f = setup_with(state, true, 4);
	uint8_t *buf = aligned(4096);
	struct iovec iov = {buf, 4096};
	bdev_add_writev(f->ch, 0, &iov, 1, 1);
	bdev_add_flush(f->ch, 2);
	assert_int_equal(bdev_submit(f->ch), 0);
	struct bdev_completion c[2];
	wait_strictly(f->ch, c, 2);
	assert_int_equal(c[0].result, 0);
	assert_int_equal(c[1].result, 0);
	assert_true(c[0].id + c[1].id == 3);
	assert_false(bdev_busy(f->ch));
	buffer_free(buf);
	teardown_fixture(f);
}

/* The file shrinks under the device: the read fails at EOF and its buffer
 * is handed back as read (ciphertext), not decrypted. */
static void failed_reads_are_not_decrypted(void **state)
{
	struct fixture *f = setup_with(state, true, 4);
	enum { SECTORS = 16 };
	uint8_t *plain = aligned(SECTORS * SECTOR_SIZE), *back = aligned(SECTORS * SECTOR_SIZE);
	fill_random(plain, SECTORS * SECTOR_SIZE, 9);
	assert_int_equal(do_one(f->ch, true, 0, plain, SECTORS * SECTOR_SIZE), 0);
	assert_int_equal(truncate(f->path, 8 * SECTOR_SIZE), 0);
	assert_int_equal(do_one(f->ch, false, 0, back, SECTORS * SECTOR_SIZE), -EIO);
	uint8_t raw[8 * SECTOR_SIZE];
	read_raw(f->path, 0, 8, raw);
	assert_memory_equal(back, raw, sizeof(raw));
	assert_memory_not_equal(back, plain, SECTOR_SIZE);
	buffer_free(plain);
	buffer_free(back);
	teardown_fixture(f);
}

static void read_only_device_refuses_writes(void **state)
{
	(void)state;
	char path[TEST_PATH_MAX];
	make_test_file(path, 64 * SECTOR_SIZE, FILL);
	struct bdev *file = open_test_file(path, BDEV_ENGINE_IO_URING, true, true, 8);
	struct bdev *crypt = open_test_crypt(file);
	assert_true(bdev_is_read_only(crypt));
	struct bdev_channel *ch;
	assert_int_equal(bdev_channel_create(crypt, 0, &ch), 0);
	uint8_t *buf = aligned(4096);
	assert_int_equal(do_one(ch, true, 0, buf, 4096), -EBADF);
	assert_int_equal(do_one(ch, false, 0, buf, 4096), 0);
	bdev_channel_destroy(ch);
	bdev_close(crypt);
	bdev_close(file);
	unlink(path);
	buffer_free(buf);
}

/* Channels of one device (as vhost's queue threads have) and a second
 * device over the same file with the same keys see each other's data;
 * other keys do not. */
static void channels_and_devices_share_data(void **state)
{
	struct fixture *f = setup_with(state, true, 8);
	uint8_t *plain = aligned(8192), *back = aligned(8192);
	fill_random(plain, 8192, 10);
	assert_int_equal(do_one(f->ch, true, 500, plain, 8192), 0);
	struct bdev_channel *other;
	assert_int_equal(bdev_channel_create(f->crypt, 4, &other), 0);
	assert_int_equal(do_one(other, false, 500, back, 8192), 0);
	assert_memory_equal(back, plain, 8192);
	bdev_channel_destroy(other);

	struct bdev *again = open_test_crypt(f->file);
	assert_int_equal(bdev_channel_create(again, 4, &other), 0);
	memset(back, 0, 8192);
	assert_int_equal(do_one(other, false, 500, back, 8192), 0);
	assert_memory_equal(back, plain, 8192);
	bdev_channel_destroy(other);
	bdev_close(again);

	uint8_t k2[32];
	memcpy(k2, test_key2, 32);
	k2[0] ^= 0x80;
	struct error err = {0};
	assert_int_equal(crypt_bdev_open(f->file, test_key1, k2, &again, &err), 0);
	assert_int_equal(bdev_channel_create(again, 4, &other), 0);
	assert_int_equal(do_one(other, false, 500, back, 8192), 0);
	assert_memory_not_equal(back, plain, 512);
	bdev_channel_destroy(other);
	bdev_close(again);
	buffer_free(plain);
	buffer_free(back);
	teardown_fixture(f);
}

/* ---- the bdev destroy hook the crypt layer wipes its keys in ---- */

static int destroyed;

static int hook_channel_create(void *layer, struct bdev_channel *self, uint32_t depth, void **out)
{
	*out = layer;
	return 0;
}
static void hook_channel_destroy(void *lch)
{
}
static void hook_add_rw(void *lch, bool write, uint64_t sector, const struct iovec *iov, int iovcnt,
			uint64_t bytes, uint64_t id)
{
}
static void hook_add_flush(void *lch, uint64_t id)
{
}
static void hook_add_fallocate(void *lch, bool punch, uint64_t sector, uint64_t count, uint64_t id)
{
}
static int hook_submit(void *lch)
{
	return 0;
}
static int hook_poll(void *lch, struct bdev_completion *out, int max)
{
	return 0;
}
static int hook_completion_fd(const void *lch)
{
	return -1;
}
static void hook_destroy(void *layer)
{
	destroyed += *(int *)layer;
}

static void layer_destroy_hook_runs_at_close(void **state)
{
	(void)state;
	struct bdev_layer_ops ops = {
	    .channel_create = hook_channel_create,
	    .channel_destroy = hook_channel_destroy,
	    .add_rw = hook_add_rw,
	    .add_flush = hook_add_flush,
	    .add_fallocate = hook_add_fallocate,
	    .submit = hook_submit,
	    .poll = hook_poll,
	    .completion_fd = hook_completion_fd,
	    .destroy = hook_destroy,
	};
	struct bdev *below, *dev;
	assert_int_equal(bdev_open_null(8, &below), 0);
	int context = 5;
	assert_int_equal(bdev_layer_open(&ops, &context, sizeof(context), below, &dev), 0);
	destroyed = 0;
	bdev_close(dev);
	assert_int_equal(destroyed, 5);
	/* Layers without the hook close as before. */
	ops.destroy = NULL;
	assert_int_equal(bdev_layer_open(&ops, &context, sizeof(context), below, &dev), 0);
	bdev_close(dev);
	assert_int_equal(destroyed, 5);
	bdev_close(below);
}

static enum bdev_engine uring = BDEV_ENGINE_IO_URING, sync_engine = BDEV_ENGINE_SYNC;

#define BOTH_ENGINES(t)                                                                            \
	cmocka_unit_test_prestate(t, &uring), cmocka_unit_test_prestate(t, &sync_engine)

int main(void)
{
	if (!crypt_test_engine_usable())
		return TEST_EXIT_SKIP;
	const struct CMUnitTest tests[] = {
	    BOTH_ENGINES(round_trip_matches_reference),
	    BOTH_ENGINES(write_leaves_caller_buffer_plaintext),
	    BOTH_ENGINES(unaligned_iovecs),
	    BOTH_ENGINES(partial_sectors_are_refused),
	    BOTH_ENGINES(writes_larger_than_the_pool),
	    BOTH_ENGINES(many_requests_in_flight),
	    BOTH_ENGINES(zeroes_are_stored_encrypted),
	    BOTH_ENGINES(flush_passes_through),
	    cmocka_unit_test_prestate(failed_reads_are_not_decrypted, &uring),
	    cmocka_unit_test(read_only_device_refuses_writes),
	    BOTH_ENGINES(channels_and_devices_share_data),
	    cmocka_unit_test(layer_destroy_hook_runs_at_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The lazy device over the crypt layer, as vhost-backend stacks them: the
 * raw image stays plaintext, fetched stripes land in the disk file as the
 * reference's ciphertext, single-stripe reads of unfetched stripes come from
 * the image untouched, and the metadata file is encrypted too (its magic
 * only appears after decryption). */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "crypt_test_util.h"
#include "crypto/crypto.h"
#include "fetch/fetch.h"
#include "lazy/lazy.h"
#include "meta/meta.h"
#include "xts_reference.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHIFT	       6u /* 64-sector (32 KiB) stripes */
#define STRIPE_SECTORS (1u << SHIFT)
#define STRIPES	       8u
#define DISK_SECTORS   ((uint64_t)STRIPES * STRIPE_SECTORS)
/* The image covers five and a half stripes: the sixth is partial. */
#define IMAGE_SECTORS (5u * STRIPE_SECTORS + STRIPE_SECTORS / 2)
#define IMAGE_STRIPES 6u

struct stack {
	char disk_path[TEST_PATH_MAX], image_path[TEST_PATH_MAX], meta_path[TEST_PATH_MAX];
	struct bdev *disk_file, *meta_file, *image;
	struct bdev *disk, *meta; /* crypt layers */
	struct bdev *lazy;
	struct stripe_state *state;
	struct fetch_worker *worker;
	struct bdev_channel *ch;
	uint8_t *image_data;
};

static void write_file(const char *path, const uint8_t *data, size_t bytes)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, bytes, 0), (ssize_t)bytes);
	close(fd);
}

static void stack_open(struct stack *s, bool copy_on_read)
{
	memset(s, 0, sizeof(*s));
	make_test_file(s->disk_path, DISK_SECTORS * SECTOR_SIZE, 0);
	make_test_file(s->image_path, IMAGE_SECTORS * SECTOR_SIZE, 0);
	make_test_file(s->meta_path, meta_file_size(DISK_SECTORS, SHIFT), 0);
	s->image_data = malloc(IMAGE_SECTORS * SECTOR_SIZE);
	assert_non_null(s->image_data);
	fill_random(s->image_data, IMAGE_SECTORS * SECTOR_SIZE, 42);
	write_file(s->image_path, s->image_data, IMAGE_SECTORS * SECTOR_SIZE);

	s->disk_file = open_test_file(s->disk_path, BDEV_ENGINE_IO_URING, true, false, 64);
	s->meta_file = open_test_file(s->meta_path, BDEV_ENGINE_IO_URING, true, false, 64);
	s->image = open_test_file(s->image_path, BDEV_ENGINE_IO_URING, true, true, 64);
	s->disk = open_test_crypt(s->disk_file);
	s->meta = open_test_crypt(s->meta_file);

	struct metadata m;
	struct error err = {0};
	assert_int_equal(meta_create(&m, SHIFT, STRIPES, IMAGE_STRIPES), 0);
	if (meta_save(s->meta, &m, &err) < 0)
		fail_msg("%s", err.text);
	meta_free(&m);
	if (meta_load(s->meta, META_LOAD_ALL, &m, &err) < 0)
		fail_msg("%s", err.text);
	assert_int_equal(stripe_state_create(&m, DISK_SECTORS, &s->state, &err), 0);
	meta_free(&m);

	struct stripe_source *src;
	assert_int_equal(stripe_source_raw(s->image, STRIPE_SECTORS, &src), 0);
	struct fetch_worker_options wo = {
	    .disk = s->disk, .metadata = s->meta, .source = src, .state = s->state};
	struct error werr = {0};
	if (fetch_worker_start(&wo, &s->worker, &werr) < 0)
		fail_msg("%s", werr.text);
	struct lazy_options lo = {
	    .base = s->disk,
	    .image = copy_on_read ? NULL : s->image,
	    .state = s->state,
	    .worker = s->worker,
	};
	assert_int_equal(lazy_bdev_open(&lo, &s->lazy), 0);
	assert_int_equal(bdev_channel_create(s->lazy, 16, &s->ch), 0);
}

static void stack_close(struct stack *s)
{
	bdev_channel_destroy(s->ch);
	bdev_close(s->lazy);
	fetch_worker_stop(s->worker);
	stripe_state_destroy(s->state);
	bdev_close(s->meta);
	bdev_close(s->disk);
	bdev_close(s->meta_file);
	bdev_close(s->disk_file);
	bdev_close(s->image);
	unlink(s->disk_path);
	unlink(s->image_path);
	unlink(s->meta_path);
	free(s->image_data);
}

/* What the lazy device reads: the image, zeroes past its end within its
 * last stripe (fetched stripes are zero-filled), and past that what the
 * disk file holds decrypted. The file starts as zeroes, which decrypt to
 * noise: an encrypted disk never reads as zeroes where nothing was written
 * (as with dm-crypt). */
static void expected(const struct stack *s, uint64_t sector, uint64_t count, uint8_t *out)
{
	memset(out, 0, count * SECTOR_SIZE);
	for (uint64_t i = 0; i < count; i++) {
		uint8_t *o = out + i * SECTOR_SIZE;
		if (sector + i < IMAGE_SECTORS)
			memcpy(o, s->image_data + (sector + i) * SECTOR_SIZE, SECTOR_SIZE);
		else if (sector + i >= (uint64_t)IMAGE_STRIPES * STRIPE_SECTORS)
			assert_int_equal(ref_xts(test_key1, test_key2, false, REF_TWEAK_UBIBLK,
						 sector + i, o, o, 1),
					 0);
	}
}

static void image_is_plaintext(const struct stack *s)
{
	uint8_t *raw = malloc(IMAGE_SECTORS * SECTOR_SIZE);
	assert_non_null(raw);
	read_raw(s->image_path, 0, IMAGE_SECTORS, raw);
	assert_memory_equal(raw, s->image_data, IMAGE_SECTORS * SECTOR_SIZE);
	free(raw);
}

/* The metadata file: no magic in the raw bytes, the magic and `fetched`
 * FETCHED bits after decrypting with the independent reference. */
static void metadata_is_encrypted(const struct stack *s, unsigned fetched)
{
	uint64_t sectors = meta_file_size(DISK_SECTORS, SHIFT) / SECTOR_SIZE;
	uint8_t *raw = malloc(sectors * SECTOR_SIZE), *plain = malloc(sectors * SECTOR_SIZE);
	assert_non_null(raw);
	assert_non_null(plain);
	read_raw(s->meta_path, 0, sectors, raw);
	assert_memory_not_equal(raw, "BDEV_UBI", 8);
	assert_int_equal(
	    ref_xts(test_key1, test_key2, false, REF_TWEAK_UBIBLK, 0, raw, plain, sectors), 0);
	assert_memory_equal(plain, "BDEV_UBI\0", 9);
	assert_int_equal(plain[13], SHIFT);
	unsigned count = 0;
	for (unsigned i = 0; i < STRIPES; i++) {
		uint8_t h = plain[512 + i];
		assert_int_equal(!!(h & META_HEADER_HAS_SOURCE), i < IMAGE_STRIPES);
		count += (h & META_HEADER_FETCHED) != 0;
	}
	assert_int_equal(count, fetched);
	/* Read without the crypt layer, the file is no metadata at all. */
	struct metadata m;
	struct error err = {0};
	assert_int_equal(meta_load(s->meta_file, META_LOAD_ALL, &m, &err), -EBADMSG);
	free(raw);
	free(plain);
}

static void copy_on_read_fetches_into_ciphertext(void **state)
{
	(void)state;
	struct stack s;
	stack_open(&s, true);
	size_t bytes = DISK_SECTORS * SECTOR_SIZE;
	uint8_t *buf = buffer_alloc(BUFFER_ALIGNMENT, bytes), *want = malloc(bytes);
	assert_non_null(buf);
	assert_non_null(want);
	/* Reads stripe by stripe: each source stripe is fetched first. */
	for (uint64_t st = 0; st < STRIPES; st++)
		assert_int_equal(do_one(s.ch, false, st * STRIPE_SECTORS,
					buf + st * STRIPE_SECTORS * SECTOR_SIZE,
					STRIPE_SECTORS * SECTOR_SIZE),
				 0);
	expected(&s, 0, DISK_SECTORS, want);
	assert_memory_equal(buf, want, bytes);
	assert_file_encrypts(s.disk_path, 0, (uint64_t)IMAGE_STRIPES * STRIPE_SECTORS, want);
	image_is_plaintext(&s);
	metadata_is_encrypted(&s, IMAGE_STRIPES);
	buffer_free(buf);
	free(want);
	stack_close(&s);
}

static void image_reads_and_writes_over_unfetched_stripes(void **state)
{
	(void)state;
	struct stack s;
	stack_open(&s, false);
	size_t stripe_bytes = STRIPE_SECTORS * SECTOR_SIZE;
	uint8_t *buf = buffer_alloc(BUFFER_ALIGNMENT, 2 * stripe_bytes),
		*want = malloc(2 * stripe_bytes);
	assert_non_null(buf);
	assert_non_null(want);
	/* A single-stripe read is served from the plaintext image: nothing is
	 * fetched and the disk file stays zero. */
	assert_int_equal(do_one(s.ch, false, STRIPE_SECTORS + 3, buf, 10 * SECTOR_SIZE), 0);
	expected(&s, STRIPE_SECTORS + 3, 10, want);
	assert_memory_equal(buf, want, 10 * SECTOR_SIZE);
	uint8_t raw[SECTOR_SIZE], zero[SECTOR_SIZE] = {0};
	read_raw(s.disk_path, STRIPE_SECTORS + 3, 1, raw);
	assert_memory_equal(raw, zero, SECTOR_SIZE);

	/* A write inside stripe 2 fetches it, then overwrites part of it. */
	fill_random(buf, 4096, 7);
	assert_int_equal(do_one(s.ch, true, 2 * STRIPE_SECTORS + 8, buf, 4096), 0);
	expected(&s, 2 * STRIPE_SECTORS, STRIPE_SECTORS, want);
	memcpy(want + 8 * SECTOR_SIZE, buf, 4096);
	assert_int_equal(do_one(s.ch, false, 2 * STRIPE_SECTORS, buf, stripe_bytes), 0);
	assert_memory_equal(buf, want, stripe_bytes);
	assert_file_encrypts(s.disk_path, 2 * STRIPE_SECTORS, STRIPE_SECTORS, want);
	image_is_plaintext(&s);
	metadata_is_encrypted(&s, 1);
	buffer_free(buf);
	free(want);
	stack_close(&s);
}

int main(void)
{
	if (!crypt_test_engine_usable())
		return TEST_EXIT_SKIP;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(copy_on_read_fetches_into_ciphertext),
	    cmocka_unit_test(image_reads_and_writes_over_unfetched_stripes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

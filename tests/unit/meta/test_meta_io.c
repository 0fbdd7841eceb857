/* Load and save through real devices (io_uring and sync engines,
 * O_DIRECT) and through null devices for the size limits. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "meta/meta.h"
#include "meta_test_util.h"

static const enum bdev_engine engines[] = {BDEV_ENGINE_IO_URING, BDEV_ENGINE_SYNC};

static const uint8_t prefix_shift11[14] = {0x42, 0x44, 0x45, 0x56, 0x5F, 0x55, 0x42,
					   0x49, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0B};

/* A file whose sector 0 is `prefix` (with shift `shift`) and header bytes `headers`. */
static void make_metadata_file(char path[TEST_PATH_MAX], size_t size, uint8_t shift,
			       const uint8_t *headers, size_t n)
{
	uint8_t *buf = calloc(1, size);
	assert_non_null(buf);
	memcpy(buf, prefix_shift11, sizeof(prefix_shift11));
	buf[13] = shift;
	if (n)
		memcpy(buf + 512, headers, n);
	meta_test_file(path, buf, size);
	free(buf);
}

static int load_file(const char *path, enum bdev_engine engine, struct metadata *m,
		     struct error *err)
{
	struct bdev *dev = meta_test_open(path, engine, true);
	int rc = meta_load(dev, META_LOAD_ALL, m, err);
	bdev_close(dev);
	return rc;
}

static void save_then_load_round_trips_on_a_1_mib_file(void **state)
{
	for (size_t e = 0; e < sizeof(engines) / sizeof(engines[0]); e++) {
		char path[TEST_PATH_MAX];
		/* Stale bytes everywhere: save must rewrite every sector. */
		uint8_t *junk = malloc(1 << 20);
		memset(junk, 0x5A, 1 << 20);
		meta_test_file(path, junk, 1 << 20);
		free(junk);

		struct metadata m;
		assert_int_equal(meta_create(&m, 11, 10, 6), 0);
		m.headers[2] |= META_HEADER_FETCHED | META_HEADER_WRITTEN;
		struct bdev *dev = meta_test_open(path, engines[e], false);
		struct error err = {0};
		assert_int_equal(meta_save(dev, &m, &err), 0);
		bdev_close(dev);

		size_t len;
		uint8_t *raw = meta_test_read_file(path, &len);
		assert_int_equal(len, 1 << 20);
		assert_memory_equal(raw, prefix_shift11, 14);
		for (size_t i = 14; i < 512; i++)
			assert_int_equal(raw[i], 0);
		assert_memory_equal(raw + 512, m.headers, 10);
		for (size_t i = 512 + 10; i < len; i++)
			assert_int_equal(raw[i], 0);
		free(raw);

		struct metadata back;
		assert_int_equal(load_file(path, engines[e], &back, &err), 0);
		assert_int_equal(back.shift, 11);
		/* The loaded array is the whole file: longer than what was saved. */
		assert_int_equal(back.header_count, (1 << 20) - 512);
		assert_memory_equal(back.headers, m.headers, 10);
		assert_int_equal(back.headers[10], 0);
		meta_free(&back);
		meta_free(&m);
		unlink(path);
	}
}

static void all_zero_file_is_a_magic_mismatch(void **state)
{
	for (size_t e = 0; e < sizeof(engines) / sizeof(engines[0]); e++) {
		char path[TEST_PATH_MAX];
		meta_test_file(path, NULL, 8192);
		struct metadata m;
		struct error err = {0};
		assert_int_equal(load_file(path, engines[e], &m, &err), -EBADMSG);
		assert_non_null(strstr(err.text, "Metadata magic mismatch"));
		unlink(path);
	}
}

static void minor_version_1_is_a_version_mismatch(void **state)
{
	char path[TEST_PATH_MAX];
	uint8_t buf[1024] = {0};
	memcpy(buf, prefix_shift11, 14);
	buf[11] = 1;
	meta_test_file(path, buf, sizeof(buf));
	struct metadata m;
	struct error err = {0};
	assert_int_equal(load_file(path, BDEV_ENGINE_IO_URING, &m, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.text, "Metadata version mismatch"));
	unlink(path);
}

static void shifts_5_and_18_are_rejected_on_load(void **state)
{
	uint8_t bad[] = {5, 18};
	for (size_t i = 0; i < sizeof(bad); i++) {
		char path[TEST_PATH_MAX];
		make_metadata_file(path, 1024, bad[i], NULL, 0);
		struct metadata m;
		struct error err = {0};
		assert_int_equal(load_file(path, BDEV_ENGINE_IO_URING, &m, &err), -EINVAL);
		assert_non_null(strstr(err.text, "out of range"));
		unlink(path);
	}
}

static void empty_file_is_too_short(void **state)
{
	char path[TEST_PATH_MAX];
	meta_test_file(path, NULL, 0);
	struct metadata m;
	struct error err = {0};
	assert_int_equal(load_file(path, BDEV_ENGINE_IO_URING, &m, &err), -EBADMSG);
	assert_non_null(strstr(err.text, "too short"));
	unlink(path);
}

static void loaded_headers_keep_every_bit(void **state)
{
	char path[TEST_PATH_MAX];
	uint8_t headers[600];
	for (size_t i = 0; i < sizeof(headers); i++)
		headers[i] = (uint8_t)(i * 7);
	make_metadata_file(path, 2048, 6, headers, sizeof(headers));
	struct metadata m;
	struct error err = {0};
	assert_int_equal(load_file(path, BDEV_ENGINE_SYNC, &m, &err), 0);
	assert_int_equal(m.shift, 6);
	assert_int_equal(m.header_count, 1536);
	/* Headers 512.. sit in file sector 2. */
	assert_memory_equal(m.headers, headers, sizeof(headers));
	meta_free(&m);
	unlink(path);
}

static void saving_to_a_0_sector_device_exceeds_capacity(void **state)
{
	struct bdev *dev;
	assert_int_equal(bdev_open_null(0, &dev), 0);
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 0, 0), 0);
	struct error err = {0};
	assert_int_equal(meta_save(dev, &m, &err), -ENOSPC);
	assert_string_equal(err.text, "Metadata size 512 exceeds device capacity 0");
	meta_free(&m);
	bdev_close(dev);
}

static void headers_beyond_the_file_exceed_capacity(void **state)
{
	char path[TEST_PATH_MAX];
	meta_test_file(path, NULL, 1024);
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 513, 0), 0);
	struct bdev *dev = meta_test_open(path, BDEV_ENGINE_IO_URING, false);
	struct error err = {0};
	assert_int_equal(meta_save(dev, &m, &err), -ENOSPC);
	assert_string_equal(err.text, "Metadata size 1025 exceeds device capacity 1024");
	bdev_close(dev);
	meta_free(&m);
	unlink(path);
}

static void a_2_pow_32_sector_device_is_too_large(void **state)
{
	struct bdev *dev;
	assert_int_equal(bdev_open_null(UINT64_C(1) << 32, &dev), 0);
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 4, 0), 0);
	struct error err = {0};
	assert_int_equal(meta_save(dev, &m, &err), -EFBIG);
	assert_non_null(strstr(err.text, "Device sector count exceeds u32"));
	struct metadata loaded;
	assert_int_equal(meta_load(dev, META_LOAD_ALL, &loaded, &err), -EFBIG);
	assert_non_null(strstr(err.text, "Metadata file too large"));
	meta_free(&m);
	bdev_close(dev);
}

/* A 2 GiB sparse file for a 10-stripe disk: the disk's headers are one
 * sector, and only that sector (after sector 0) is read. */
#define HUGE_FILE_BYTES	   (2ull << 30)
#define FAR_HEADER	   1500000000ull /* a surplus header deep in the file */
#define TINY_DISK_SECTORS  (10u * 2048)
#define SCANNED_FILE_BYTES (64ull << 20) /* enough for many scan pieces */
#define SCANNED_FAR_HEADER 50000000ull

static void sparse_file(char path[TEST_PATH_MAX], uint64_t size, uint64_t far_header)
{
	meta_test_file(path, NULL, size);
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	uint8_t prefix[14];
	memcpy(prefix, prefix_shift11, sizeof(prefix));
	assert_int_equal(fwrite(prefix, 1, sizeof(prefix), f), sizeof(prefix));
	uint8_t first[3] = {META_HEADER_HAS_SOURCE | META_HEADER_FETCHED, META_HEADER_HAS_SOURCE,
			    META_HEADER_WRITTEN};
	assert_int_equal(fseek(f, 512, SEEK_SET), 0);
	assert_int_equal(fwrite(first, 1, sizeof(first), f), sizeof(first));
	uint8_t far = META_HEADER_HAS_SOURCE | META_HEADER_FETCHED;
	assert_int_equal(fseek(f, (long)(512 + far_header), SEEK_SET), 0);
	assert_int_equal(fwrite(&far, 1, 1, f), 1);
	assert_int_equal(fclose(f), 0);
}

static int load_for_tiny_disk(const char *path, struct metadata *m)
{
	struct bdev *dev = meta_test_open(path, BDEV_ENGINE_IO_URING, true);
	struct error err = {0};
	int rc = meta_load(dev, TINY_DISK_SECTORS, m, &err);
	bdev_close(dev);
	return rc;
}

static void a_huge_file_loads_only_the_disks_headers(void **state)
{
	char path[TEST_PATH_MAX];
	sparse_file(path, HUGE_FILE_BYTES, FAR_HEADER);
	struct metadata m;
	assert_int_equal(load_for_tiny_disk(path, &m), 0);
	assert_int_equal(m.shift, 11);
	assert_int_equal(m.header_count, META_HEADERS_PER_SECTOR); /* 10 stripes, one sector */
	assert_int_equal(m.headers[0], META_HEADER_HAS_SOURCE | META_HEADER_FETCHED);
	assert_int_equal(m.headers[2], META_HEADER_WRITTEN);
	meta_free(&m);

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	/* With 256 MiB of address space a whole-file read (2 GiB buffer plus
	 * a copy) cannot even start; the bounded load must still succeed.
	 * Sanitizers reserve terabytes of address space, so not under them. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit limit = {256u << 20, 256u << 20};
		if (setrlimit(RLIMIT_AS, &limit) < 0)
			_exit(2);
		struct metadata child;
		_exit(load_for_tiny_disk(path, &child) == 0 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
#endif
	unlink(path);
}

struct scan_result {
	uint64_t seen;
	uint64_t flagged_at;
	uint64_t flagged;
};

static void note_headers(void *ctx, const uint8_t *headers, size_t count)
{
	struct scan_result *r = ctx;
	for (size_t i = 0; i < count; i++)
		if (headers[i]) {
			r->flagged++;
			r->flagged_at = r->seen + i;
		}
	r->seen += count;
}

static void scanning_visits_every_header_after_first(void **state)
{
	char path[TEST_PATH_MAX];
	sparse_file(path, SCANNED_FILE_BYTES, SCANNED_FAR_HEADER);
	struct bdev *dev = meta_test_open(path, BDEV_ENGINE_SYNC, true);
	struct scan_result r = {0};
	struct error err = {0};
	/* From 1 (not sector-aligned): headers 1.. of the file. */
	assert_int_equal(meta_scan_headers(dev, 1, note_headers, &r, &err), 0);
	assert_int_equal(r.seen, SCANNED_FILE_BYTES - 512 - 1);
	assert_int_equal(r.flagged, 3); /* headers 1, 2 and the far one */
	assert_int_equal(r.flagged_at + 1, SCANNED_FAR_HEADER);
	r = (struct scan_result){0};
	assert_int_equal(meta_scan_headers(dev, SCANNED_FILE_BYTES, note_headers, &r, &err), 0);
	assert_int_equal(r.seen, 0); /* past the end: nothing */
	bdev_close(dev);
	unlink(path);
}

static void null_device_reads_as_no_metadata(void **state)
{
	/* The null engine leaves buffers untouched: the zeroed buffer fails the
	 * magic check instead of being mistaken for metadata. */
	struct bdev *dev;
	assert_int_equal(bdev_open_null(16, &dev), 0);
	struct metadata m;
	struct error err = {0};
	assert_int_equal(meta_load(dev, META_LOAD_ALL, &m, &err), -EBADMSG);
	bdev_close(dev);
}

static void saving_to_a_read_only_device_fails(void **state)
{
	char path[TEST_PATH_MAX];
	meta_test_file(path, NULL, 1024);
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 4, 4), 0);
	struct bdev *dev = meta_test_open(path, BDEV_ENGINE_IO_URING, true);
	struct error err = {0};
	assert_true(meta_save(dev, &m, &err) < 0);
	assert_non_null(strstr(err.text, "Metadata write failed"));
	bdev_close(dev);
	meta_free(&m);
	size_t len;
	uint8_t *raw = meta_test_read_file(path, &len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(raw[i], 0);
	free(raw);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(save_then_load_round_trips_on_a_1_mib_file),
	    cmocka_unit_test(all_zero_file_is_a_magic_mismatch),
	    cmocka_unit_test(minor_version_1_is_a_version_mismatch),
	    cmocka_unit_test(shifts_5_and_18_are_rejected_on_load),
	    cmocka_unit_test(empty_file_is_too_short),
	    cmocka_unit_test(loaded_headers_keep_every_bit),
	    cmocka_unit_test(a_huge_file_loads_only_the_disks_headers),
	    cmocka_unit_test(scanning_visits_every_header_after_first),
	    cmocka_unit_test(saving_to_a_0_sector_device_exceeds_capacity),
	    cmocka_unit_test(headers_beyond_the_file_exceed_capacity),
	    cmocka_unit_test(a_2_pow_32_sector_device_is_too_large),
	    cmocka_unit_test(null_device_reads_as_no_metadata),
	    cmocka_unit_test(saving_to_a_read_only_device_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

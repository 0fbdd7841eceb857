/* meta_init_file: creating, extending and refusing to reset metadata files. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "meta/meta.h"
#include "meta_test_util.h"

/* A path in the scratch folder that does not exist yet. */
static void fresh_path(char path[TEST_PATH_MAX])
{
	meta_test_file(path, NULL, 0);
	assert_int_equal(unlink(path), 0);
}

static int init_file(const char *path, const struct metadata *m, bool force,
		     const char *const *protected_paths, struct error *err)
{
	struct meta_init_options opts = {
	    .path = path,
	    .engine = BDEV_ENGINE_IO_URING,
	    .force = force,
	    .protected_paths = protected_paths,
	};
	error_clear(err);
	return meta_init_file(&opts, m, err);
}

static void load(const char *path, struct metadata *m)
{
	struct bdev *dev = meta_test_open(path, BDEV_ENGINE_SYNC, true);
	assert_int_equal(meta_load(dev, META_LOAD_ALL, m, NULL), 0);
	bdev_close(dev);
}

static void creates_a_missing_file_0600(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	fresh_path(path);
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 10, 6), 0);
	mode_t old_umask = umask(0);
	assert_int_equal(init_file(path, &m, false, NULL, &err), 0);
	umask(old_umask);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 1024);
	struct metadata back;
	load(path, &back);
	assert_int_equal(back.shift, 11);
	assert_memory_equal(back.headers, m.headers, 10);
	meta_free(&back);
	meta_free(&m);
	unlink(path);
}

static void extends_short_files_and_never_shrinks(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	struct metadata m;
	assert_int_equal(meta_create(&m, 6, 600, 600), 0); /* needs 1536 bytes */
	meta_test_file(path, "junk", 4);
	assert_int_equal(init_file(path, &m, false, NULL, &err), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 1536);
	unlink(path);

	uint8_t *big = malloc(16384);
	memset(big, 0xEE, 16384); /* not metadata: free to initialise */
	meta_test_file(path, big, 16384);
	free(big);
	assert_int_equal(init_file(path, &m, false, NULL, &err), 0);
	size_t len;
	uint8_t *raw = meta_test_read_file(path, &len);
	assert_int_equal(len, 16384);
	for (size_t i = 512 + 600; i < len; i++)
		assert_int_equal(raw[i], 0);
	free(raw);
	meta_free(&m);
	unlink(path);
}

static void refuses_to_reset_metadata_without_force(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	fresh_path(path);
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 10, 6), 0);
	m.headers[1] |= META_HEADER_FETCHED;
	m.headers[4] |= META_HEADER_FETCHED;
	assert_int_equal(init_file(path, &m, false, NULL, &err), 0);
	struct metadata fresh;
	assert_int_equal(meta_create(&fresh, 11, 10, 6), 0);
	assert_int_equal(init_file(path, &fresh, false, NULL, &err), -EEXIST);
	char expected[TEST_PATH_MAX + 128];
	snprintf(expected, sizeof(expected),
		 "%s is already initialised (2 of 6 stripes fetched); use --force to reset it",
		 path);
	assert_string_equal(err.text, expected);
	struct metadata back;
	load(path, &back);
	assert_int_equal(back.headers[1], META_HEADER_HAS_SOURCE | META_HEADER_FETCHED);
	meta_free(&back);

	assert_int_equal(init_file(path, &fresh, true, NULL, &err), 0);
	load(path, &back);
	assert_int_equal(back.headers[1], META_HEADER_HAS_SOURCE);
	meta_free(&back);

	/* Our magic with another version: not ours to reset either. */
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, 9, SEEK_SET), 0);
	assert_int_equal(fputc(2, f), 2);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(init_file(path, &fresh, false, NULL, &err), -EEXIST);
	assert_non_null(strstr(err.text, "version mismatch"));
	assert_int_equal(init_file(path, &fresh, true, NULL, &err), 0);
	meta_free(&fresh);
	meta_free(&m);
	unlink(path);
}

static void refuses_protected_files_links_and_odd_sizes(void **state)
{
	char path[TEST_PATH_MAX], disk[TEST_PATH_MAX], link[TEST_PATH_MAX];
	struct error err = {0};
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 1, 1), 0);
	uint8_t data[1024];
	memset(data, 0x33, sizeof(data));
	meta_test_file(disk, data, sizeof(data));
	const char *protected_paths[] = {"/nonexistent/disk", disk, NULL};
	assert_int_equal(init_file(disk, &m, true, protected_paths, &err), -EINVAL);
	assert_non_null(strstr(err.text, "refusing to overwrite it"));
	size_t len;
	uint8_t *raw = meta_test_read_file(disk, &len);
	assert_memory_equal(raw, data, sizeof(data));
	free(raw);

	fresh_path(link);
	assert_int_equal(symlink(disk, link), 0);
	assert_int_equal(init_file(link, &m, true, NULL, &err), -ELOOP);
	assert_non_null(strstr(err.text, "symbolic link"));
	unlink(link);

	meta_test_file(path, NULL, 1500); /* >= the 1024 needed, not sectors */
	assert_int_equal(init_file(path, &m, false, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.text, "not a multiple of 512"));
	unlink(path);
	unlink(disk);
	meta_free(&m);
}

static void a_failure_removes_the_file_it_created(void **state)
{
	char path[TEST_PATH_MAX];
	struct error err = {0};
	fresh_path(path);
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 4, 4), 0);
	struct meta_init_options opts = {
	    .path = path, .engine = (enum bdev_engine)99}; /* the device cannot open */
	assert_true(meta_init_file(&opts, &m, &err) < 0);
	assert_int_not_equal(access(path, F_OK), 0);
	meta_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(creates_a_missing_file_0600),
	    cmocka_unit_test(extends_short_files_and_never_shrinks),
	    cmocka_unit_test(refuses_to_reset_metadata_without_force),
	    cmocka_unit_test(refuses_protected_files_links_and_odd_sizes),
	    cmocka_unit_test(a_failure_removes_the_file_it_created),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

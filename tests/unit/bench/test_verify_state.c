/* Verify state files: creation, reopening, rejection of damaged files. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bench/verify_state.h"
#include "common/common.h"

struct fixture {
	char dir[256];
	char path[300];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	snprintf(f->dir, sizeof(f->dir), "%s/bench-state-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/state", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static const struct verify_state_params params = {
    .block_size = 4096, .range_offset = 1 << 20, .block_count = 100, .seed = 42};

static void created_state_persists_records(void **state)
{
	struct fixture *f = *state;
	struct verify_state st;
	bool created;
	assert_int_equal(verify_state_open_file(&st, f->path, true, &params, &created), 0);
	assert_true(created);
	assert_int_equal(st.blocks[99].acked_gen, 0);
	st.blocks[7].issued_gen = 3;
	st.blocks[7].acked_gen = 2;
	assert_int_equal(verify_state_sync(&st), 0);
	verify_state_close(&st);

	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_size, VERIFY_STATE_HEADER_SIZE + 100 * sizeof(struct verify_block));

	/* Reopened read-only, with different "fresh" values that must not win. */
	struct verify_state_params other = params;
	other.block_size = 512;
	assert_int_equal(verify_state_open_file(&st, f->path, false, &other, &created), 0);
	assert_false(created);
	assert_int_equal(st.params.block_size, 4096);
	assert_int_equal(st.params.range_offset, 1 << 20);
	assert_int_equal(st.params.block_count, 100);
	assert_int_equal(st.params.seed, 42);
	assert_int_equal(st.blocks[7].issued_gen, 3);
	assert_int_equal(st.blocks[7].acked_gen, 2);
	verify_state_close(&st);
}

static void updates_survive_without_sync(void **state)
{
	/* The records are a shared mapping: a store is in the file at once,
	 * which is what lets a killed bench leave a usable state behind. */
	struct fixture *f = *state;
	struct verify_state st;
	bool created;
	assert_int_equal(verify_state_open_file(&st, f->path, true, &params, &created), 0);
	st.blocks[50].issued_gen = 9;
	struct verify_block on_disk;
	int fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &on_disk, sizeof(on_disk),
			       VERIFY_STATE_HEADER_SIZE + 50 * sizeof(struct verify_block)),
			 sizeof(on_disk));
	close(fd);
	assert_int_equal(on_disk.issued_gen, 9);
	verify_state_close(&st);
}

static void missing_file_is_an_error_when_reading(void **state)
{
	struct fixture *f = *state;
	struct verify_state st;
	bool created;
	assert_int_equal(verify_state_open_file(&st, f->path, false, &params, &created), -ENOENT);
	assert_int_equal(access(f->path, F_OK), -1); /* not created */
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void damaged_files_are_rejected(void **state)
{
	struct fixture *f = *state;
	struct verify_state st;
	bool created;
	assert_int_equal(verify_state_open_file(&st, f->path, true, &params, &created), 0);
	verify_state_close(&st);
	size_t len = VERIFY_STATE_HEADER_SIZE + 100 * sizeof(struct verify_block);
	char *image = malloc(len);
	int fd = open(f->path, O_RDONLY);
	assert_int_equal(read(fd, image, len), (ssize_t)len);
	close(fd);

	/* Truncated: the records do not cover the range. */
	write_file(f->path, image, len - 8);
	assert_int_equal(verify_state_open_file(&st, f->path, true, &params, &created), -EINVAL);
	/* Not a state file. */
	image[0] ^= 0xff;
	write_file(f->path, image, len);
	assert_int_equal(verify_state_open_file(&st, f->path, true, &params, &created), -EINVAL);
	image[0] ^= 0xff;
	/* A block size that is not a multiple of 512. */
	struct verify_state_header *hdr = (struct verify_state_header *)image;
	hdr->block_size = 1000;
	write_file(f->path, image, len);
	assert_int_equal(verify_state_open_file(&st, f->path, true, &params, &created), -EINVAL);
	hdr->block_size = 4096;
	/* A newer format. */
	hdr->version = 2;
	write_file(f->path, image, len);
	assert_int_equal(verify_state_open_file(&st, f->path, true, &params, &created), -EINVAL);
	/* Too short for a header. */
	write_file(f->path, image, 10);
	assert_int_equal(verify_state_open_file(&st, f->path, true, &params, &created), -EINVAL);
	free(image);
}

static void memory_state_starts_empty(void **state)
{
	struct verify_state st;
	assert_int_equal(verify_state_open_memory(&st, &params), 0);
	assert_int_equal(st.params.block_count, 100);
	for (uint64_t i = 0; i < 100; i++)
		assert_int_equal(st.blocks[i].issued_gen, 0);
	st.blocks[99].acked_gen = 1;
	assert_int_equal(verify_state_sync(&st), 0);
	verify_state_close(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(created_state_persists_records, setup, teardown),
	    cmocka_unit_test_setup_teardown(updates_survive_without_sync, setup, teardown),
	    cmocka_unit_test_setup_teardown(missing_file_is_an_error_when_reading, setup, teardown),
	    cmocka_unit_test_setup_teardown(damaged_files_are_rejected, setup, teardown),
	    cmocka_unit_test(memory_state_starts_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

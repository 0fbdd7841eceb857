/* The filesystem store on a scratch directory: round trips, HEAD, missing
 * objects, names, the GET size limit, many requests at once (each completed
 * exactly once), no torn objects while an object is replaced, failures
 * that name the object, and closing with requests in flight. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
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

#include "store/store.h"

#define SYNC_TIMEOUT_MS 10000

static char scratch[256];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(scratch, sizeof(scratch), "%s/store-fs-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(scratch) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *scratch_path(const char *rel)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", scratch, rel);
	return path;
}

static struct store *open_fs(const char *rel, uint32_t connections)
{
	struct archive_source_config cfg = {.store = ARCHIVE_STORE_FILESYSTEM,
					    .path = scratch_path(rel),
					    .connections = connections};
	struct store *s = NULL;
	struct error err = {0};
	int rc = store_open(&cfg, NULL, &s, &err);
	if (rc)
		fail_msg("store_open: %d %s", rc, err.text);
	return s;
}

/* Waits for and returns exactly one completion. */
static void wait_one(struct store *s, struct store_completion *c)
{
	for (;;) {
		if (store_poll(s, c, 1) == 1)
			return;
		struct pollfd p = {.fd = store_completion_fd(s), .events = POLLIN};
		assert_int_equal(poll(&p, 1, SYNC_TIMEOUT_MS), 1);
	}
}

static void test_open_creates_dirs(void **state)
{
	(void)state;
	struct store *s = open_fs("a/b/c", 0);
	struct stat st;
	assert_int_equal(stat(scratch_path("a/b/c/data"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(store_concurrency(s), 16);
	assert_int_equal(store_pending(s), 0);
	store_close(s);
	/* Opening an existing store is fine too. */
	s = open_fs("a/b/c", 4);
	assert_int_equal(store_concurrency(s), 4);
	store_close(s);
	s = open_fs("a/b/c", 200);
	assert_int_equal(store_concurrency(s), 16);
	store_close(s);
}

static void test_open_errors(void **state)
{
	(void)state;
	struct error err = {0};
	struct store *s = (struct store *)1;
	struct archive_source_config cfg = {.store = ARCHIVE_STORE_FILESYSTEM};
	assert_int_equal(store_open(&cfg, NULL, &s, &err), -EINVAL);
	assert_null(s);
	assert_non_null(strstr(err.text, "no path"));

	int fd = open(scratch_path("file"), O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	cfg.path = scratch_path("file/store");
	assert_int_equal(store_open(&cfg, NULL, &s, &err), -ENOTDIR);
	assert_non_null(strstr(err.text, "Failed to create dir"));
	assert_non_null(strstr(err.text, "/file"));
}

static void test_round_trip_sync(void **state)
{
	(void)state;
	struct store *s = open_fs("st", 2);
	struct error err = {0};
	const char *json = "{\"format_version\":1}";
	assert_int_equal(store_put_sync(s, "metadata.json", (const uint8_t *)json, strlen(json),
					SYNC_TIMEOUT_MS, &err),
			 0);
	uint8_t *body;
	size_t len;
	assert_int_equal(
	    store_get_sync(s, "metadata.json", 1 << 20, SYNC_TIMEOUT_MS, &body, &len, &err), 0);
	assert_int_equal(len, strlen(json));
	assert_memory_equal(body, json, len);
	free(body);

	/* Replaced whole; an empty object is an object. */
	assert_int_equal(store_put_sync(s, "metadata.json", NULL, 0, SYNC_TIMEOUT_MS, &err), 0);
	assert_int_equal(store_get_sync(s, "metadata.json", 10, SYNC_TIMEOUT_MS, &body, &len, &err),
			 0);
	assert_int_equal(len, 0);
	free(body);
	struct stat st;
	assert_int_equal(stat(scratch_path("st/metadata.json"), &st), 0);
	assert_int_equal(st.st_size, 0);

	/* Names with folders get their folders. */
	assert_int_equal(
	    store_put_sync(s, "x/y/z.bin", (const uint8_t *)"abc", 3, SYNC_TIMEOUT_MS, &err), 0);
	assert_int_equal(stat(scratch_path("st/x/y/z.bin"), &st), 0);
	assert_int_equal(st.st_size, 3);
	assert_int_equal(store_pending(s), 0);
	store_close(s);
}

static void test_async_and_head(void **state)
{
	(void)state;
	struct store *s = open_fs("st", 3);
	const char *name = "data/00ff";
	uint8_t data[5000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	struct store_completion c;

	assert_int_equal(store_head(s, name, 1), 0);
	assert_int_equal(store_pending(s), 1);
	wait_one(s, &c);
	assert_int_equal(c.tag, 1);
	assert_int_equal(c.op, STORE_HEAD);
	assert_int_equal(c.result, -ENOENT);
	assert_null(c.body);
	assert_non_null(strstr(c.error.text, "HeadObject data/00ff failed"));
	assert_int_equal(store_pending(s), 0);

	assert_int_equal(store_get(s, name, 1 << 20, 2), 0);
	wait_one(s, &c);
	assert_int_equal(c.tag, 2);
	assert_int_equal(c.op, STORE_GET);
	assert_int_equal(c.result, -ENOENT);
	assert_null(c.body);
	assert_non_null(strstr(c.error.text, "GetObject data/00ff failed"));

	assert_int_equal(store_put(s, name, data, sizeof(data), 3), 0);
	wait_one(s, &c);
	assert_int_equal(c.tag, 3);
	assert_int_equal(c.op, STORE_PUT);
	assert_int_equal(c.result, 0);
	assert_null(c.body);

	assert_int_equal(store_head(s, name, 4), 0);
	wait_one(s, &c);
	assert_int_equal(c.result, 0);
	assert_int_equal(store_get(s, name, sizeof(data), 5), 0);
	wait_one(s, &c);
	assert_int_equal(c.result, 0);
	assert_int_equal(c.body_len, sizeof(data));
	assert_memory_equal(c.body, data, sizeof(data));
	free(c.body);

	/* Larger than max_bytes: refused before anything is allocated. */
	assert_int_equal(store_get(s, name, sizeof(data) - 1, 6), 0);
	wait_one(s, &c);
	assert_int_equal(c.result, -EFBIG);
	assert_null(c.body);
	assert_non_null(strstr(c.error.text, "GetObject data/00ff failed: object is 5000 bytes"));
	uint8_t *body = (uint8_t *)1;
	size_t len = 1;
	struct error err = {0};
	assert_int_equal(store_get_sync(s, name, 10, SYNC_TIMEOUT_MS, &body, &len, &err), -EFBIG);
	assert_null(body);
	assert_int_equal(len, 0);

	/* A folder is not an object. */
	assert_int_equal(store_get(s, "data", 100, 7), 0);
	wait_one(s, &c);
	assert_int_equal(c.result, -EISDIR);
	assert_int_equal(store_head(s, "data", 8), 0);
	wait_one(s, &c);
	assert_int_equal(c.result, -EISDIR);

	/* Nothing left, and the fd says so. */
	assert_int_equal(store_poll(s, &c, 1), 0);
	struct pollfd p = {.fd = store_completion_fd(s), .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0);
	store_close(s);
}

static void test_names(void **state)
{
	(void)state;
	static const char *valid[] = {"metadata.json", "stripe-hashes.json",
				      "data/ab12",     "a/b/c",
				      "A_b-c.d",       ".hidden",
				      "..x",	       "x..",
				      "a/.b/c"};
	static const char *invalid[] = {"",	  "/abs", "a/",		 "a//b",  ".",
					"..",	  "../x", "a/../b",	 "a/./b", "a/..",
					"sp ace", "a\\b", "caf\xc3\xa9", "a:b",	  "x\n"};
	for (size_t i = 0; i < ARRAY_SIZE(valid); i++)
		if (!store_name_is_valid(valid[i]))
			fail_msg("\"%s\" should be valid", valid[i]);
	for (size_t i = 0; i < ARRAY_SIZE(invalid); i++)
		if (store_name_is_valid(invalid[i]))
			fail_msg("\"%s\" should be invalid", invalid[i]);
	assert_false(store_name_is_valid(NULL));
	char longest[1026];
	memset(longest, 'a', 1025);
	longest[1025] = '\0';
	assert_false(store_name_is_valid(longest));
	longest[1024] = '\0';
	assert_true(store_name_is_valid(longest));

	struct store *s = open_fs("st", 2);
	struct error err = {0};
	uint8_t *body;
	size_t len;
	for (size_t i = 0; i < ARRAY_SIZE(invalid); i++) {
		assert_int_equal(store_get(s, invalid[i], 10, 1), -EINVAL);
		assert_int_equal(store_put(s, invalid[i], (const uint8_t *)"x", 1, 1), -EINVAL);
		assert_int_equal(store_head(s, invalid[i], 1), -EINVAL);
		assert_int_equal(store_get_sync(s, invalid[i], 10, 100, &body, &len, &err),
				 -EINVAL);
		assert_int_equal(store_put_sync(s, invalid[i], (const uint8_t *)"x", 1, 100, &err),
				 -EINVAL);
	}
	/* Refused requests have no completion. */
	assert_int_equal(store_pending(s), 0);
	struct store_completion c;
	assert_int_equal(store_poll(s, &c, 1), 0);
	store_close(s);
	/* Nothing was written outside the store. */
	struct stat st;
	assert_int_equal(stat(scratch_path("x"), &st), -1);
}

static void test_put_failure(void **state)
{
	(void)state;
	struct store *s = open_fs("st", 2);
	struct error err = {0};
	assert_int_equal(store_put_sync(s, "obj", (const uint8_t *)"1", 1, SYNC_TIMEOUT_MS, &err),
			 0);
	/* A file where the name needs a folder. */
	assert_int_equal(store_put_sync(s, "obj/x", (const uint8_t *)"1", 1, SYNC_TIMEOUT_MS, &err),
			 -ENOTDIR);
	assert_non_null(strstr(err.text, "PutObject obj/x failed: Failed to create dir"));
	uint8_t *body;
	size_t len;
	assert_int_equal(store_get_sync(s, "obj/x", 10, SYNC_TIMEOUT_MS, &body, &len, &err),
			 -ENOENT);
	assert_non_null(strstr(err.text, "GetObject obj/x failed"));
	/* A folder where the object should be: the rename fails, the temporary
	 * file is removed. */
	assert_int_equal(mkdir(scratch_path("st/data/dir"), 0777), 0);
	assert_int_equal(mkdir(scratch_path("st/data/dir/sub"), 0777), 0);
	assert_int_equal(
	    store_put_sync(s, "data/dir", (const uint8_t *)"1", 1, SYNC_TIMEOUT_MS, &err), -EISDIR);
	assert_non_null(strstr(err.text, "PutObject data/dir failed: cannot rename"));
	DIR *d = opendir(scratch_path("st/data"));
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "dir"))
			fail_msg("left behind: %s", e->d_name);
	closedir(d);

	/* A valid name the file system cannot hold fails with its reason. */
	char longest[1025];
	memset(longest, 'n', 1024);
	longest[1024] = '\0';
	assert_int_equal(store_put_sync(s, longest, (const uint8_t *)"1", 1, SYNC_TIMEOUT_MS, &err),
			 -ENAMETOOLONG);
	assert_non_null(strstr(err.text, "PutObject nnnn"));
	assert_int_equal(store_get_sync(s, longest, 10, SYNC_TIMEOUT_MS, &body, &len, &err),
			 -ENAMETOOLONG);
	store_close(s);
}

#define MANY 600

static void object_name(char *name, size_t size, int i)
{
	snprintf(name, size, "data/%064x", i);
}

static void test_many_concurrent(void **state)
{
	(void)state;
	struct store *s = open_fs("st", 8);
	static uint8_t data[MANY][64];
	static int seen[MANY];
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < MANY; i++) {
		memset(data[i], i & 0xff, sizeof(data[i]));
		char name[80];
		object_name(name, sizeof(name), i);
		assert_int_equal(store_put(s, name, data[i], (size_t)(i % 64) + 1, (uint64_t)i), 0);
	}
	assert_int_equal(store_pending(s), MANY);
	struct store_completion c[7];
	int got = 0;
	while (got < MANY) {
		struct pollfd p = {.fd = store_completion_fd(s), .events = POLLIN};
		assert_int_equal(poll(&p, 1, SYNC_TIMEOUT_MS), 1);
		int n = store_poll(s, c, (int)ARRAY_SIZE(c));
		assert_true(n > 0); /* readable means something waits */
		for (int k = 0; k < n; k++) {
			assert_int_equal(c[k].result, 0);
			assert_int_equal(c[k].op, STORE_PUT);
			assert_true(c[k].tag < MANY);
			assert_int_equal(seen[c[k].tag]++, 0);
		}
		got += n;
		assert_int_equal(store_pending(s), (size_t)(MANY - got));
	}
	/* Every object, read back at once. */
	for (int i = 0; i < MANY; i++) {
		char name[80];
		object_name(name, sizeof(name), i);
		assert_int_equal(store_get(s, name, 64, (uint64_t)(MANY + i)), 0);
	}
	got = 0;
	while (got < MANY) {
		struct store_completion one;
		int n = store_poll(s, &one, 1);
		if (!n) {
			struct pollfd p = {.fd = store_completion_fd(s), .events = POLLIN};
			assert_int_equal(poll(&p, 1, SYNC_TIMEOUT_MS), 1);
			continue;
		}
		int i = (int)(one.tag - MANY);
		assert_true(i >= 0 && i < MANY);
		assert_int_equal(seen[i]++, 1);
		assert_int_equal(one.result, 0);
		assert_int_equal(one.body_len, (size_t)(i % 64) + 1);
		assert_memory_equal(one.body, data[i], one.body_len);
		free(one.body);
		got++;
	}
	assert_int_equal(store_pending(s), 0);
	assert_int_equal(store_poll(s, c, 7), 0);
	store_close(s);

	/* No temporary files were left. */
	DIR *d = opendir(scratch_path("st/data"));
	assert_non_null(d);
	struct dirent *e;
	int files = 0;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (e->d_name[0] == '.')
			fail_msg("left behind: %s", e->d_name);
		files++;
	}
	closedir(d);
	assert_int_equal(files, MANY);
}

/* GETs racing PUTs that replace the same object see the old object or the
 * new one, whole. */
static void test_never_torn(void **state)
{
	(void)state;
	struct store *s = open_fs("st", 8);
	enum { SIZE = 1 << 20, ROUNDS = 24 };
	uint8_t *a = malloc(SIZE), *b = malloc(SIZE);
	assert_non_null(a);
	assert_non_null(b);
	memset(a, 'A', SIZE);
	memset(b, 'B', SIZE);
	struct error err = {0};
	assert_int_equal(store_put_sync(s, "big", a, SIZE, SYNC_TIMEOUT_MS, &err), 0);
	for (int r = 0; r < ROUNDS; r++) {
		assert_int_equal(store_put(s, "big", r % 2 ? a : b, SIZE, 1), 0);
		for (int g = 0; g < 3; g++)
			assert_int_equal(store_get(s, "big", SIZE, 2), 0);
	}
	int gets = 0;
	while (store_pending(s)) {
		struct store_completion c;
		if (!store_poll(s, &c, 1)) {
			struct pollfd p = {.fd = store_completion_fd(s), .events = POLLIN};
			assert_int_equal(poll(&p, 1, SYNC_TIMEOUT_MS), 1);
			continue;
		}
		assert_int_equal(c.result, 0);
		if (c.tag == 2) {
			gets++;
			assert_int_equal(c.body_len, SIZE);
			uint8_t first = c.body[0];
			assert_true(first == 'A' || first == 'B');
			assert_true(!memcmp(c.body, first == 'A' ? a : b, SIZE));
			free(c.body);
		}
	}
	assert_int_equal(gets, ROUNDS * 3);
	store_close(s);
	free(a);
	free(b);
}

/* Closing drops what was not polled and frees it (ASan checks). */
static void test_close_in_flight(void **state)
{
	(void)state;
	struct store *s = open_fs("st", 4);
	static uint8_t data[4096];
	for (int i = 0; i < 300; i++) {
		char name[80];
		object_name(name, sizeof(name), i % 50);
		if (i % 3 == 0)
			assert_int_equal(store_put(s, name, data, sizeof(data), (uint64_t)i), 0);
		else
			assert_int_equal(store_get(s, name, sizeof(data), (uint64_t)i), 0);
	}
	struct store_completion c;
	wait_one(s, &c);
	free(c.body);
	store_close(s);
	store_close(NULL);

	/* Whatever was stored is whole. */
	s = open_fs("st", 4);
	for (int i = 0; i < 50; i++) {
		char name[80];
		object_name(name, sizeof(name), i);
		uint8_t *body;
		size_t len;
		struct error err = {0};
		int rc = store_get_sync(s, name, sizeof(data), SYNC_TIMEOUT_MS, &body, &len, &err);
		assert_true(rc == 0 || rc == -ENOENT);
		if (rc == 0) {
			assert_int_equal(len, sizeof(data));
			free(body);
		}
	}
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_creates_dirs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_round_trip_sync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_async_and_head, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_put_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_never_torn, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The archive stripe source on a filesystem store, driven the way the fetch
 * worker drives it (request, wait on the completion fd, poll): the golden
 * archives written in Python read back as their disk with every
 * compression/encryption combination; a tampered, missing or oversized object fails
 * only its stripe; construction refuses a tampered stripe-hashes.json, a
 * wrong archive_kek, an unknown format version and a stripe size that is not
 * the disk's; stripes sharing an object share one GET (and an encrypted
 * shared object is not clobbered by decrypting it in place); many more
 * requests than connections each complete exactly once; absent stripes read
 * as zeros and still wake the owner; the size fits a disk that ends inside
 * the last stripe; an object several stripes name is kept after its GET
 * for the stripes still to come (one GET however far apart they are asked
 * for), within a budget (least recently used dropped first), only when its
 * hash checks, decoded per stripe, and dropped on close. */
#include <errno.h>
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

#include "archive/archive.h"
#include "archive_source/archive_source.h"
#include "archive_source/object_cache.h"
#include "fetch/source_internal.h"

#define STRIPE_SECTORS 16u
#define STRIPE_BYTES   (STRIPE_SECTORS * 512u)
#define GOLDEN_STRIPES 7u
#define WAIT_MS	       10000

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
	snprintf(scratch, sizeof(scratch), "%s/archive-source-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(scratch) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *scratch_path(const char *rel)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", scratch, rel);
	return path;
}

/* A golden archive copied into the scratch directory (tests change it). */
static const char *copy_golden(const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cp -r '%s/%s' '%s/%s'", ARCHIVE_GOLDEN_DIR, name, scratch,
		 name);
	assert_int_equal(system(cmd), 0);
	return scratch_path(name);
}

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *data = malloc(*len + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, *len, f), *len);
	data[*len] = 0;
	fclose(f);
	return data;
}

static void write_all(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		fail_msg("cannot create %s", path);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
	char path[768];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	write_all(path, text, strlen(text));
}

static uint8_t *golden_disk(void)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/plain.bin", ARCHIVE_GOLDEN_DIR);
	size_t len;
	uint8_t *disk = read_all(path, &len);
	assert_int_equal(len, GOLDEN_STRIPES * STRIPE_BYTES);
	return disk;
}

static void golden_kek(struct kek *kek)
{
	/* Parsed from memory: git does not keep the file's mode 0600, which
	 * kek_load insists on. */
	char path[512];
	snprintf(path, sizeof(path), "%s/kek.yaml", ARCHIVE_GOLDEN_DIR);
	size_t len;
	char *yaml = (char *)read_all(path, &len);
	struct error err = {0};
	if (kek_parse(yaml, len, kek, &err) < 0)
		fail_msg("kek.yaml: %s", err.text);
	free(yaml);
}

/* A config for the filesystem archive at dir; the KEK is moved in. */
static struct archive_source_config fs_config(const char *dir, uint32_t connections,
					      const struct kek *kek)
{
	struct archive_source_config cfg = {
	    .store = ARCHIVE_STORE_FILESYSTEM, .path = (char *)dir, .connections = connections};
	if (kek)
		cfg.archive_kek = *kek;
	else
		kek_init_none(&cfg.archive_kek);
	return cfg;
}

static struct stripe_source *open_source(const char *dir, const struct kek *kek,
					 uint32_t connections, uint64_t disk_sectors)
{
	struct archive_source_config cfg = fs_config(dir, connections, kek);
	struct stripe_source *src = NULL;
	struct error err = {0};
	int rc = stripe_source_archive(&cfg, STRIPE_SECTORS, disk_sectors, &src, &err);
	if (rc < 0)
		fail_msg("stripe_source_archive(%s): %d %s", dir, rc, err.text);
	assert_int_equal(source_open(src), 0);
	return src;
}

/* The error construction fails with. */
static int open_fails(const char *dir, const struct kek *kek, uint32_t stripe_sectors,
		      struct error *err)
{
	struct archive_source_config cfg = fs_config(dir, 4, kek);
	struct stripe_source *src = NULL;
	error_clear(err);
	int rc = stripe_source_archive(&cfg, stripe_sectors, 64 * STRIPE_SECTORS, &src, err);
	assert_true(rc < 0);
	assert_null(src);
	return rc;
}

static void assert_contains(const char *text, const char *part)
{
	if (!strstr(text, part))
		fail_msg("\"%s\" does not contain \"%s\"", text, part);
}

/* Polls until `want` completions arrived (failing after WAIT_MS without
 * one), recording each stripe's result; every stripe completes once. */
static void collect(struct stripe_source *src, unsigned want, int *results, uint64_t stripes)
{
	unsigned got = 0;
	while (got < want) {
		struct source_completion done[4];
		int n = source_poll(src, done, 4);
		if (n == 0) {
			struct pollfd p = {.fd = source_completion_fd(src), .events = POLLIN};
			if (poll(&p, 1, WAIT_MS) != 1)
				fail_msg("no completion within %d ms (%u of %u)", WAIT_MS, got,
					 want);
			continue;
		}
		for (int i = 0; i < n; i++) {
			assert_true(done[i].stripe < stripes);
			assert_int_equal(results[done[i].stripe], 1); /* still owed */
			results[done[i].stripe] = done[i].result;
			got++;
		}
	}
	struct source_completion extra;
	assert_int_equal(source_poll(src, &extra, 1), 0);
	assert_false(source_busy(src));
}

/* Reads stripes [0, count) with one request each, all at once. */
static void read_stripes(struct stripe_source *src, uint64_t count, uint8_t *bufs, int *results)
{
	for (uint64_t i = 0; i < count; i++) {
		results[i] = 1;
		memset(bufs + i * STRIPE_BYTES, 0xAA, STRIPE_BYTES);
		assert_int_equal(source_request(src, i, bufs + i * STRIPE_BYTES), 0);
	}
	assert_true(source_busy(src));
	collect(src, (unsigned)count, results, count);
}

static void check_golden(const char *name, bool with_kek)
{
	struct kek kek;
	if (with_kek)
		golden_kek(&kek);
	else
		kek_init_none(&kek);
	const char *dir = copy_golden(name);
	uint8_t *disk = golden_disk();
	struct stripe_source *src =
	    open_source(dir, &kek, 4, (uint64_t)GOLDEN_STRIPES * STRIPE_SECTORS);
	assert_int_equal(stripe_source_sector_count(src), GOLDEN_STRIPES * STRIPE_SECTORS);
	for (uint64_t i = 0; i < GOLDEN_STRIPES; i++)
		assert_int_equal(stripe_source_has_stripe(src, i), i != 3);
	assert_false(stripe_source_has_stripe(src, GOLDEN_STRIPES));
	uint8_t *bufs = malloc(GOLDEN_STRIPES * STRIPE_BYTES);
	int results[GOLDEN_STRIPES];
	read_stripes(src, GOLDEN_STRIPES, bufs, results);
	for (unsigned i = 0; i < GOLDEN_STRIPES; i++) {
		assert_int_equal(results[i], 0);
		if (memcmp(bufs + i * STRIPE_BYTES, disk + i * STRIPE_BYTES, STRIPE_BYTES) != 0)
			fail_msg("%s: stripe %u differs from the disk", name, i);
	}
	struct archive_source_stats st;
	stripe_source_archive_stats(src, &st);
	assert_int_equal(st.zero_stripes, 1);
	assert_int_equal(st.failed, 0);
	source_close(src);
	stripe_source_destroy(src);
	free(bufs);
	free(disk);
	kek_free(&kek);
}

static void test_golden_plain(void **state)
{
	(void)state;
	check_golden("plain", false);
}

static void test_golden_snappy(void **state)
{
	(void)state;
	check_golden("snappy", false);
}

static void test_golden_xts_kek(void **state)
{
	(void)state;
	check_golden("xts-kek", true);
}

static void test_golden_snappy_xts_kek(void **state)
{
	(void)state;
	check_golden("snappy-xts-kek", true);
}

static void test_golden_snappy_xts_nokek(void **state)
{
	(void)state;
	check_golden("snappy-xts-nokek", false);
}

/* The object file of stripe i in the archive at dir. */
static void object_path(const char *dir, unsigned stripe, char *out, size_t len)
{
	char hashes[768];
	snprintf(hashes, sizeof(hashes), "%s/stripe-hashes.json", dir);
	size_t n;
	char *json = (char *)read_all(hashes, &n);
	struct archive_stripe_map map = {0};
	assert_int_equal(archive_stripe_map_parse(json, n, &map, NULL), 0);
	const struct archive_stripe_hash *e = archive_stripe_map_find(&map, stripe);
	assert_non_null(e);
	char name[ARCHIVE_OBJECT_NAME_SIZE];
	archive_object_name(e->hash, name);
	snprintf(out, len, "%s/%s", dir, name);
	archive_stripe_map_free(&map);
	free(json);
}

/* One flipped byte in stripe 1's object (used by no other stripe), the
 * object gone or grown past any stripe's size: stripe 1 fails, every other
 * stripe reads right. */
enum damage { FLIP_BYTE, REMOVE, GROW };

static void check_bad_object(const char *name, enum damage damage, int expected)
{
	struct kek kek;
	golden_kek(&kek);
	const char *dir = copy_golden(name);
	char path[1024];
	object_path(dir, 1, path, sizeof(path));
	if (damage == REMOVE) {
		assert_int_equal(unlink(path), 0);
	} else {
		size_t len;
		uint8_t *obj = read_all(path, &len);
		if (damage == FLIP_BYTE) {
			obj[len / 2] ^= 0x01;
		} else {
			/* larger than any stripe's object: never read into memory */
			obj = realloc(obj, len + 64 * 1024);
			assert_non_null(obj);
			memset(obj + len, 0, 64 * 1024);
			len += 64 * 1024;
		}
		write_all(path, obj, len);
		free(obj);
	}
	uint8_t *disk = golden_disk();
	struct stripe_source *src =
	    open_source(dir, &kek, 2, (uint64_t)GOLDEN_STRIPES * STRIPE_SECTORS);
	uint8_t *bufs = malloc(GOLDEN_STRIPES * STRIPE_BYTES);
	int results[GOLDEN_STRIPES];
	read_stripes(src, GOLDEN_STRIPES, bufs, results);
	for (unsigned i = 0; i < GOLDEN_STRIPES; i++) {
		if (i == 1) {
			assert_int_equal(results[i], expected);
			continue;
		}
		assert_int_equal(results[i], 0);
		assert_memory_equal(bufs + i * STRIPE_BYTES, disk + i * STRIPE_BYTES, STRIPE_BYTES);
	}
	struct archive_source_stats st;
	stripe_source_archive_stats(src, &st);
	assert_int_equal(st.failed, 1);
	/* A retry reads the object again (one stripe names it: never kept)
	 * and fails again. */
	results[1] = 1;
	assert_int_equal(source_request(src, 1, bufs + STRIPE_BYTES), 0);
	collect(src, 1, results, GOLDEN_STRIPES);
	assert_true(results[1] < 0);
	source_close(src);
	stripe_source_destroy(src);
	free(bufs);
	free(disk);
	kek_free(&kek);
}

static void test_tampered_object_fails_its_stripe(void **state)
{
	(void)state;
	check_bad_object("plain", FLIP_BYTE, -EIO);
	check_bad_object("snappy-xts-kek", FLIP_BYTE, -EIO);
}

static void test_missing_object_fails_its_stripe(void **state)
{
	(void)state;
	check_bad_object("snappy", REMOVE, -ENOENT);
}

static void test_oversized_object_fails_its_stripe(void **state)
{
	(void)state;
	check_bad_object("plain", GROW, -EFBIG);
	check_bad_object("snappy-xts-kek", GROW, -EFBIG);
}

static void test_tampered_stripe_hashes(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	const char *bad[] = {
	    /* uppercase hex never names an object */
	    "{\"0\":\"DC404A613FEDAEB54034514BC6505F56B933CAA5250299BA7D094377A51CAA46\"}",
	    /* a path, not a hash */
	    "{\"0\":\"../../../../etc/passwd\"}",
	    /* 63 digits */
	    "{\"0\":\"dc404a613fedaeb54034514bc6505f56b933caa5250299ba7d094377a51caa4\"}",
	    /* not a string */
	    "{\"0\":12}",
	    "[]",
	};
	struct error err;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		write_text(dir, "stripe-hashes.json", bad[i]);
		open_fails(dir, NULL, STRIPE_SECTORS, &err);
		assert_contains(err.text, "failed to parse stripe-hashes.json");
	}
}

static void test_wrong_archive_kek(void **state)
{
	(void)state;
	const char *dir = copy_golden("xts-kek");
	struct error err;
	/* No KEK: the wrapped key is taken as the key, and is 48 bytes. */
	open_fails(dir, NULL, STRIPE_SECTORS, &err);
	assert_contains(err.text, "archive_kek cannot unwrap the archive's encryption_key");
	assert_contains(err.text, "Key length must be exactly 32 bytes");
	/* Another AES-GCM key: the tag does not verify. */
	struct kek kek;
	golden_kek(&kek);
	kek.key.data[0] ^= 0xFF;
	open_fails(dir, &kek, STRIPE_SECTORS, &err);
	assert_contains(err.text, "archive_kek cannot unwrap the archive's encryption_key");
	assert_contains(err.text, "Failed to decrypt data");
	kek_free(&kek);
}

static void test_format_version_99(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	write_text(dir, "metadata.json",
		   "{\"format_version\":99,\"stripe_sector_count\":16,\"encryption_key\":null,"
		   "\"compression\":\"none\"}");
	struct error err;
	open_fails(dir, NULL, STRIPE_SECTORS, &err);
	assert_contains(err.text, "unsupported archive format version 99 (supported 1..=1)");
	write_text(dir, "metadata.json", "{\"stripe_sector_count\":16}");
	open_fails(dir, NULL, STRIPE_SECTORS, &err);
	assert_contains(err.text, "missing field `format_version`");
}

static void test_stripe_size_mismatch(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	struct error err;
	open_fails(dir, NULL, 2048, &err);
	assert_string_equal(err.text, "the archive's stripe_sector_count 16 does not match the "
				      "disk's stripe of 2048 sectors");
}

static void test_empty_store(void **state)
{
	(void)state;
	struct error err;
	open_fails(scratch_path("empty"), NULL, STRIPE_SECTORS, &err);
	assert_contains(err.text, "metadata.json");
	/* metadata.json without a mapping */
	copy_golden("plain");
	char path[768];
	snprintf(path, sizeof(path), "%s/stripe-hashes.json", scratch_path("plain"));
	assert_int_equal(unlink(path), 0);
	open_fails(scratch_path("plain"), NULL, STRIPE_SECTORS, &err);
	assert_contains(err.text, "stripe-hashes.json");
}

/* Format version 1 with an empty mapping: a source of no stripes. */
static void test_empty_mapping(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	write_text(dir, "stripe-hashes.json", "{}");
	struct stripe_source *src = open_source(dir, NULL, 1, 64);
	assert_int_equal(stripe_source_sector_count(src), 0);
	assert_false(stripe_source_has_stripe(src, 0));
	source_close(src);
	stripe_source_destroy(src);
}

/* Stripes 0 and 4 (zeros) and 2 and 6 (equal) share objects in the plain
 * archive: four requests, two GETs, four right stripes. */
static void test_shared_objects_one_get(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	uint8_t *disk = golden_disk();
	struct stripe_source *src =
	    open_source(dir, NULL, 1, (uint64_t)GOLDEN_STRIPES * STRIPE_SECTORS);
	uint8_t *bufs = malloc(GOLDEN_STRIPES * STRIPE_BYTES);
	int results[GOLDEN_STRIPES];
	/* One GET's object serves two stripes, handed out one per poll: the
	 * second is announced on the fd although the store has nothing left. */
	results[0] = results[4] = 1;
	assert_int_equal(source_request(src, 0, bufs), 0);
	assert_int_equal(source_request(src, 4, bufs + 4 * STRIPE_BYTES), 0);
	struct source_completion c;
	struct pollfd p = {.fd = source_completion_fd(src), .events = POLLIN};
	while (source_poll(src, &c, 1) == 0)
		assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	assert_int_equal(c.result, 0);
	results[c.stripe] = 0;
	assert_int_equal(poll(&p, 1, 0), 1);
	collect(src, 1, results, GOLDEN_STRIPES);
	results[2] = results[6] = 1;
	assert_int_equal(source_request(src, 2, bufs + 2 * STRIPE_BYTES), 0);
	assert_int_equal(source_request(src, 6, bufs + 6 * STRIPE_BYTES), 0);
	collect(src, 2, results, GOLDEN_STRIPES);
	const uint64_t order[] = {0, 2, 4, 6};
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		assert_int_equal(results[order[i]], 0);
		assert_memory_equal(bufs + order[i] * STRIPE_BYTES, disk + order[i] * STRIPE_BYTES,
				    STRIPE_BYTES);
	}
	struct archive_source_stats st;
	stripe_source_archive_stats(src, &st);
	assert_int_equal(st.gets, 2);
	assert_int_equal(st.coalesced, 2);
	/* Every stripe naming an object was served, so none is kept: asking
	 * again is another GET. */
	results[0] = 1;
	assert_int_equal(source_request(src, 0, bufs), 0);
	collect(src, 1, results, GOLDEN_STRIPES);
	stripe_source_archive_stats(src, &st);
	assert_int_equal(st.gets, 3);
	source_close(src);
	stripe_source_destroy(src);
	free(bufs);
	free(disk);
}

/* An encrypted object two stripes point at (a remapped stripe-hashes.json:
 * the hash verifies for both). Decrypting works in place, so the stripe
 * decoded first must not clobber the object for the other: stripe 0 reads
 * right whichever order they are decoded in. (Stripe 7 decrypts with its
 * own tweak and reads as noise: the mapping is not authenticated.) */
static void test_shared_encrypted_object_not_clobbered(void **state)
{
	(void)state;
	struct kek kek;
	golden_kek(&kek);
	const char *dir = copy_golden("xts-kek");
	char path[768];
	snprintf(path, sizeof(path), "%s/stripe-hashes.json", dir);
	size_t n;
	char *json = (char *)read_all(path, &n);
	struct archive_stripe_map map = {0};
	assert_int_equal(archive_stripe_map_parse(json, n, &map, NULL), 0);
	uint8_t hash0[ARCHIVE_HASH_BYTES];
	memcpy(hash0, archive_stripe_map_find(&map, 0)->hash, ARCHIVE_HASH_BYTES);
	assert_int_equal(archive_stripe_map_put(&map, 7, hash0), 0);
	char *out = NULL;
	assert_int_equal(archive_stripe_map_write(&map, &out, NULL), 0);
	write_text(dir, "stripe-hashes.json", out);
	free(out);
	free(json);
	archive_stripe_map_free(&map);

	uint8_t *disk = golden_disk();
	for (int first = 0; first < 2; first++) {
		struct stripe_source *src = open_source(dir, &kek, 1, 8 * STRIPE_SECTORS);
		uint8_t *bufs = malloc(8 * STRIPE_BYTES);
		int results[8];
		uint64_t a = first ? 7 : 0, b = first ? 0 : 7;
		results[a] = results[b] = 1;
		assert_int_equal(source_request(src, a, bufs + a * STRIPE_BYTES), 0);
		assert_int_equal(source_request(src, b, bufs + b * STRIPE_BYTES), 0);
		collect(src, 2, results, 8);
		assert_int_equal(results[0], 0);
		assert_int_equal(results[7], 0);
		assert_memory_equal(bufs, disk, STRIPE_BYTES);
		struct archive_source_stats st;
		stripe_source_archive_stats(src, &st);
		assert_int_equal(st.gets, 1);
		source_close(src);
		stripe_source_destroy(src);
		free(bufs);
	}
	free(disk);
	kek_free(&kek);
}

/* An archive of `count` stripes, stripe i holding content i % period
 * (filled with that number: equal content is one object, named by every
 * stripe that holds it), written with the format layer. */
static const char *write_archive_with(const char *name, unsigned count, unsigned period,
				      enum archive_compression compression)
{
	const char *dir = scratch_path(name);
	char path[1024];
	snprintf(path, sizeof(path), "%s/data", dir);
	char dir_copy[512];
	snprintf(dir_copy, sizeof(dir_copy), "%s", dir);
	assert_int_equal(mkdir(dir_copy, 0700), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	struct archive_codec codec = {.stripe_sector_count = STRIPE_SECTORS,
				      .compression = compression};
	struct archive_stripe_map map = {0};
	uint8_t plain[STRIPE_BYTES];
	size_t cap = archive_object_bound(&codec, STRIPE_BYTES);
	uint8_t *obj = malloc(cap);
	for (unsigned i = 0; i < count; i++) {
		unsigned content = i % period;
		memset(plain, (int)(content + 1), STRIPE_BYTES);
		memcpy(plain, &content, sizeof(content));
		size_t len;
		uint8_t hash[ARCHIVE_HASH_BYTES];
		assert_int_equal(archive_object_encode(&codec, i, plain, STRIPE_BYTES, obj, cap,
						       &len, hash, NULL),
				 0);
		char name_buf[ARCHIVE_OBJECT_NAME_SIZE];
		archive_object_name(hash, name_buf);
		snprintf(path, sizeof(path), "%s/%s", dir_copy, name_buf);
		write_all(path, obj, len);
		assert_int_equal(archive_stripe_map_put(&map, i, hash), 0);
	}
	free(obj);
	char *json = NULL;
	assert_int_equal(archive_stripe_map_write(&map, &json, NULL), 0);
	write_text(dir_copy, "stripe-hashes.json", json);
	free(json);
	archive_stripe_map_free(&map);
	struct archive_metadata m = {.format_version = ARCHIVE_FORMAT_VERSION,
				     .stripe_sector_count = STRIPE_SECTORS,
				     .compression = compression};
	assert_int_equal(archive_metadata_write(&m, &json, NULL), 0);
	write_text(dir_copy, "metadata.json", json);
	free(json);
	return scratch_path(name);
}

/* `count` distinct stripes (each filled with its index), snappy-compressed. */
static const char *write_archive(const char *name, unsigned count)
{
	return write_archive_with(name, count, count, ARCHIVE_COMPRESSION_SNAPPY);
}

/* Far more requests than connections (and than one poll hands out): each
 * completes exactly once with its own data, whatever order the store
 * finishes them in. Polling one at a time leaves the fd readable while
 * completions are still owed. */
static void test_full_queue(void **state)
{
	(void)state;
	const unsigned count = 200;
	const char *dir = write_archive("many", count);
	struct stripe_source *src = open_source(dir, NULL, 2, (uint64_t)count * STRIPE_SECTORS);
	uint8_t *bufs = malloc((size_t)count * STRIPE_BYTES);
	int *results = malloc(count * sizeof(*results));
	read_stripes(src, count, bufs, results);
	for (unsigned i = 0; i < count; i++) {
		assert_int_equal(results[i], 0);
		unsigned got;
		memcpy(&got, bufs + (size_t)i * STRIPE_BYTES, sizeof(got));
		assert_int_equal(got, i);
		assert_int_equal(bufs[(size_t)i * STRIPE_BYTES + STRIPE_BYTES - 1],
				 (uint8_t)(i + 1));
	}

	/* One at a time: the fd stays readable while a completion is owed. */
	for (unsigned i = 0; i < 32; i++) {
		results[i] = 1;
		assert_int_equal(source_request(src, i, bufs + (size_t)i * STRIPE_BYTES), 0);
	}
	for (unsigned got = 0; got < 32; got++) {
		struct pollfd p = {.fd = source_completion_fd(src), .events = POLLIN};
		struct source_completion c;
		int n;
		while ((n = source_poll(src, &c, 1)) == 0)
			assert_int_equal(poll(&p, 1, WAIT_MS), 1);
		assert_int_equal(n, 1);
		assert_int_equal(c.result, 0);
		assert_int_equal(results[c.stripe], 1);
		results[c.stripe] = 0;
	}
	assert_false(source_busy(src));
	source_close(src);
	stripe_source_destroy(src);
	free(results);
	free(bufs);
}

/* A stripe the archive does not hold: zeros, and the fd says so. */
static void test_absent_stripe_zeros_and_wakes(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	struct stripe_source *src =
	    open_source(dir, NULL, 1, (uint64_t)GOLDEN_STRIPES * STRIPE_SECTORS);
	uint8_t *buf = malloc(STRIPE_BYTES);
	memset(buf, 0xAA, STRIPE_BYTES);
	assert_int_equal(source_request(src, 3, buf), 0);
	assert_true(source_busy(src));
	struct pollfd p = {.fd = source_completion_fd(src), .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 1);
	struct source_completion c;
	assert_int_equal(source_poll(src, &c, 1), 1);
	assert_int_equal(c.stripe, 3);
	assert_int_equal(c.result, 0);
	for (size_t i = 0; i < STRIPE_BYTES; i++)
		assert_int_equal(buf[i], 0);
	assert_false(source_busy(src));
	source_close(src);
	stripe_source_destroy(src);
	free(buf);
}

/* The archive's size is whole stripes: a disk ending inside the last one
 * holds it (the source ends with the disk); a disk a stripe short does
 * not (the source keeps its size, and the fetch worker refuses it). */
static void test_size_fits_disk(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	uint64_t whole = (uint64_t)GOLDEN_STRIPES * STRIPE_SECTORS;
	struct stripe_source *src = open_source(dir, NULL, 1, whole - 8);
	assert_int_equal(stripe_source_sector_count(src), whole - 8);
	source_close(src);
	stripe_source_destroy(src);
	src = open_source(dir, NULL, 1, whole - STRIPE_SECTORS);
	assert_int_equal(stripe_source_sector_count(src), whole);
	source_close(src);
	stripe_source_destroy(src);
	src = open_source(dir, NULL, 1, 4 * whole);
	assert_int_equal(stripe_source_sector_count(src), whole);
	source_close(src);
	stripe_source_destroy(src);
}

/* Closing with GETs in flight drops their stripes; destroying frees the
 * rest (the sanitizers watch). A closed source opens again and reads. */
static void test_close_with_gets_in_flight(void **state)
{
	(void)state;
	const char *dir = write_archive("inflight", 64);
	struct stripe_source *src = open_source(dir, NULL, 2, 64 * STRIPE_SECTORS);
	uint8_t *bufs = malloc(64 * STRIPE_BYTES);
	for (unsigned i = 0; i < 64; i++)
		assert_int_equal(source_request(src, i, bufs + (size_t)i * STRIPE_BYTES), 0);
	source_close(src);
	struct source_completion c[8];
	assert_int_equal(source_open(src), 0);
	int results[64];
	for (unsigned i = 0; i < 64; i++)
		results[i] = 0;
	/* Completions of the dropped GETs are never handed out. */
	usleep(100 * 1000);
	assert_int_equal(source_poll(src, c, 8), 0);
	results[5] = 1;
	assert_int_equal(source_request(src, 5, bufs), 0);
	collect(src, 1, results, 64);
	assert_int_equal(results[5], 0);
	unsigned got;
	memcpy(&got, bufs, sizeof(got));
	assert_int_equal(got, 5);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(source_request(src, i, bufs + (size_t)i * STRIPE_BYTES), 0);
	source_close(src);
	stripe_source_destroy(src);
	free(bufs);
}

/* Requests stripe i alone and waits for its completion: its result. */
static int read_one(struct stripe_source *src, uint64_t stripe, uint8_t *buf, uint64_t stripes)
{
	int *results = malloc(stripes * sizeof(*results));
	assert_non_null(results);
	results[stripe] = 1;
	memset(buf, 0xAA, STRIPE_BYTES);
	assert_int_equal(source_request(src, stripe, buf), 0);
	collect(src, 1, results, stripes);
	int rc = results[stripe];
	free(results);
	return rc;
}

static struct archive_source_stats stats_of(const struct stripe_source *src)
{
	struct archive_source_stats st;
	stripe_source_archive_stats(src, &st);
	return st;
}

/* Stripes 0 and 4 (zeros) and 2 and 6 (equal) of the plain archive, asked
 * for one after another: the object fetched for the first stripe serves the
 * second without a GET, announced on the fd, and is dropped once both were
 * served. */
static void test_shared_object_kept_for_later_stripe(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	uint8_t *disk = golden_disk();
	struct stripe_source *src =
	    open_source(dir, NULL, 1, (uint64_t)GOLDEN_STRIPES * STRIPE_SECTORS);
	uint8_t *buf = malloc(STRIPE_BYTES);
	const uint64_t pairs[][2] = {{0, 4}, {2, 6}};
	for (size_t i = 0; i < ARRAY_SIZE(pairs); i++) {
		assert_int_equal(read_one(src, pairs[i][0], buf, GOLDEN_STRIPES), 0);
		assert_memory_equal(buf, disk + pairs[i][0] * STRIPE_BYTES, STRIPE_BYTES);
		assert_true(stats_of(src).cache_bytes > 0);
		/* Served at once: the fd is readable although no GET ran. */
		memset(buf, 0xAA, STRIPE_BYTES);
		assert_int_equal(source_request(src, pairs[i][1], buf), 0);
		struct pollfd p = {.fd = source_completion_fd(src), .events = POLLIN};
		assert_int_equal(poll(&p, 1, 0), 1);
		struct source_completion c;
		assert_int_equal(source_poll(src, &c, 1), 1);
		assert_int_equal(c.stripe, pairs[i][1]);
		assert_int_equal(c.result, 0);
		assert_false(source_busy(src));
		assert_memory_equal(buf, disk + pairs[i][1] * STRIPE_BYTES, STRIPE_BYTES);
		struct archive_source_stats st = stats_of(src);
		assert_int_equal(st.gets, i + 1);
		assert_int_equal(st.cache_hits, i + 1);
		assert_int_equal(st.coalesced, 0);
		assert_int_equal(st.cache_bytes, 0);
	}
	/* Both stripes were served: asking again is a GET. */
	assert_int_equal(read_one(src, 4, buf, GOLDEN_STRIPES), 0);
	assert_memory_equal(buf, disk + 4 * STRIPE_BYTES, STRIPE_BYTES);
	assert_int_equal(stats_of(src).gets, 3);
	assert_int_equal(stats_of(src).cache_hits, 2);
	source_close(src);
	stripe_source_destroy(src);
	free(buf);
	free(disk);
}

/* Ten uncompressed objects of a whole stripe each, object 0 named by
 * stripes 0, 10 and 20, object k by k and k + 10: room for eight. The
 * least recently used object makes room, not the oldest: object 0, served
 * again after the cache filled, survives two evictions. */
static void test_kept_objects_evicted_least_recently_used(void **state)
{
	(void)state;
	const unsigned count = 21;
	const char *dir = write_archive_with("evict", count, 10, ARCHIVE_COMPRESSION_NONE);
	struct stripe_source *src = open_source(dir, NULL, 1, (uint64_t)count * STRIPE_SECTORS);
	uint8_t *buf = malloc(STRIPE_BYTES);
	const uint64_t full = ARCHIVE_SOURCE_CACHE_OBJECTS * object_cache_cost(STRIPE_BYTES);
	const struct {
		uint64_t stripe;
		bool get;
	} steps[] = {
	    {0, true},	 {1, true},   {2, true},   {3, true},	{4, true},   {5, true},
	    {6, true},	 {7, true},   {10, false}, {8, true},	{9, true},   {20, false},
	    {11, true},	 {12, true},  {13, false}, {14, false}, {15, false}, {16, false},
	    {17, false}, {18, false}, {19, false},
	};
	uint64_t gets = 0, hits = 0;
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		assert_int_equal(read_one(src, steps[i].stripe, buf, count), 0);
		unsigned content;
		memcpy(&content, buf, sizeof(content));
		assert_int_equal(content, steps[i].stripe % 10);
		assert_int_equal(buf[STRIPE_BYTES - 1], (uint8_t)(steps[i].stripe % 10 + 1));
		gets += steps[i].get;
		hits += !steps[i].get;
		struct archive_source_stats st = stats_of(src);
		if (st.gets != gets || st.cache_hits != hits)
			fail_msg("stripe %llu: %llu GETs, %llu hits (expected %llu, %llu)",
				 (unsigned long long)steps[i].stripe, (unsigned long long)st.gets,
				 (unsigned long long)st.cache_hits, (unsigned long long)gets,
				 (unsigned long long)hits);
		assert_true(st.cache_bytes <= full);
		if (steps[i].stripe == 7)
			assert_int_equal(st.cache_bytes, full);
	}
	/* Every stripe was asked for: nothing is kept. */
	assert_int_equal(stats_of(src).cache_bytes, 0);
	source_close(src);
	stripe_source_destroy(src);
	free(buf);
}

/* The mapping remapped so that stripes 0, 5 and 7 name stripe 0's
 * encrypted object. Kept by its hash, it decodes per stripe with that
 * stripe's tweak (so 5 and 7 read as different noise: the mapping is not
 * authenticated), exactly as when the three share one GET, in either order;
 * decrypting never clobbers the kept bytes (the third stripe would fail its
 * hash check). */
static void test_kept_encrypted_object_decodes_per_stripe(void **state)
{
	(void)state;
	struct kek kek;
	golden_kek(&kek);
	const char *dir = copy_golden("xts-kek");
	char path[768];
	snprintf(path, sizeof(path), "%s/stripe-hashes.json", dir);
	size_t n;
	char *json = (char *)read_all(path, &n);
	struct archive_stripe_map map = {0};
	assert_int_equal(archive_stripe_map_parse(json, n, &map, NULL), 0);
	uint8_t hash0[ARCHIVE_HASH_BYTES];
	memcpy(hash0, archive_stripe_map_find(&map, 0)->hash, ARCHIVE_HASH_BYTES);
	struct archive_stripe_map remapped = {0};
	for (size_t i = 0; i < map.count; i++)
		if (map.entries[i].stripe != 5)
			assert_int_equal(archive_stripe_map_put(&remapped, map.entries[i].stripe,
								map.entries[i].hash),
					 0);
	assert_int_equal(archive_stripe_map_put(&remapped, 5, hash0), 0);
	assert_int_equal(archive_stripe_map_put(&remapped, 7, hash0), 0);
	char *out = NULL;
	assert_int_equal(archive_stripe_map_write(&remapped, &out, NULL), 0);
	write_text(dir, "stripe-hashes.json", out);
	free(out);
	free(json);
	archive_stripe_map_free(&map);
	archive_stripe_map_free(&remapped);

	uint8_t *disk = golden_disk();
	const uint64_t stripes[] = {0, 5, 7};
	/* The three at once: one GET, nothing kept. */
	struct stripe_source *src = open_source(dir, &kek, 1, 8 * STRIPE_SECTORS);
	uint8_t *want = malloc(8 * STRIPE_BYTES);
	int results[8];
	for (size_t i = 0; i < ARRAY_SIZE(stripes); i++) {
		results[stripes[i]] = 1;
		assert_int_equal(source_request(src, stripes[i], want + stripes[i] * STRIPE_BYTES),
				 0);
	}
	collect(src, 3, results, 8);
	for (size_t i = 0; i < ARRAY_SIZE(stripes); i++)
		assert_int_equal(results[stripes[i]], 0);
	assert_int_equal(stats_of(src).gets, 1);
	assert_int_equal(stats_of(src).cache_hits, 0);
	source_close(src);
	stripe_source_destroy(src);
	assert_memory_equal(want, disk, STRIPE_BYTES);
	assert_memory_not_equal(want + 5 * STRIPE_BYTES, want + 7 * STRIPE_BYTES, STRIPE_BYTES);

	/* One after another, forwards and backwards: one GET, two hits. */
	uint8_t *buf = malloc(STRIPE_BYTES);
	for (int backwards = 0; backwards < 2; backwards++) {
		src = open_source(dir, &kek, 1, 8 * STRIPE_SECTORS);
		for (size_t i = 0; i < ARRAY_SIZE(stripes); i++) {
			uint64_t stripe = stripes[backwards ? ARRAY_SIZE(stripes) - 1 - i : i];
			assert_int_equal(read_one(src, stripe, buf, 8), 0);
			assert_memory_equal(buf, want + stripe * STRIPE_BYTES, STRIPE_BYTES);
		}
		struct archive_source_stats st = stats_of(src);
		assert_int_equal(st.gets, 1);
		assert_int_equal(st.cache_hits, 2);
		assert_int_equal(st.failed, 0);
		assert_int_equal(st.cache_bytes, 0);
		source_close(src);
		stripe_source_destroy(src);
	}
	free(buf);
	free(want);
	free(disk);
	kek_free(&kek);
}

/* The zero object stripes 0 and 4 of the plain archive share, tampered
 * with or missing when stripe 0 fetches it: stripe 0 fails, nothing is
 * kept, and stripe 4 (the object repaired meanwhile) fetches it again and
 * reads right. */
static void test_bad_shared_object_not_kept(void **state)
{
	(void)state;
	for (int missing = 0; missing < 2; missing++) {
		const char *dir = copy_golden("plain");
		char path[1024];
		object_path(dir, 0, path, sizeof(path));
		size_t len;
		uint8_t *good = read_all(path, &len);
		if (missing) {
			assert_int_equal(unlink(path), 0);
		} else {
			uint8_t *bad = malloc(len);
			memcpy(bad, good, len);
			bad[len / 2] ^= 0x01;
			write_all(path, bad, len);
			free(bad);
		}
		struct stripe_source *src =
		    open_source(dir, NULL, 1, (uint64_t)GOLDEN_STRIPES * STRIPE_SECTORS);
		uint8_t *buf = malloc(STRIPE_BYTES);
		assert_int_equal(read_one(src, 0, buf, GOLDEN_STRIPES), missing ? -ENOENT : -EIO);
		assert_int_equal(stats_of(src).cache_bytes, 0);
		write_all(path, good, len);
		assert_int_equal(read_one(src, 4, buf, GOLDEN_STRIPES), 0);
		for (size_t i = 0; i < STRIPE_BYTES; i++)
			assert_int_equal(buf[i], 0);
		struct archive_source_stats st = stats_of(src);
		assert_int_equal(st.gets, 2);
		assert_int_equal(st.cache_hits, 0);
		assert_int_equal(st.failed, 1);
		source_close(src);
		stripe_source_destroy(src);
		free(buf);
		free(good);
		/* the next round copies the golden archive afresh */
		char cmd[768];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* Closing drops the kept objects (a reopened source fetches again), and a
 * source closed and destroyed with objects kept frees them (the sanitizers
 * watch). */
static void test_close_drops_kept_objects(void **state)
{
	(void)state;
	const char *dir = copy_golden("plain");
	struct stripe_source *src =
	    open_source(dir, NULL, 1, (uint64_t)GOLDEN_STRIPES * STRIPE_SECTORS);
	uint8_t *buf = malloc(STRIPE_BYTES);
	assert_int_equal(read_one(src, 0, buf, GOLDEN_STRIPES), 0);
	assert_true(stats_of(src).cache_bytes > 0);
	source_close(src);
	assert_int_equal(stats_of(src).cache_bytes, 0);
	assert_int_equal(source_open(src), 0);
	assert_int_equal(read_one(src, 4, buf, GOLDEN_STRIPES), 0);
	assert_int_equal(stats_of(src).gets, 2);
	assert_int_equal(stats_of(src).cache_hits, 0);
	assert_int_equal(read_one(src, 2, buf, GOLDEN_STRIPES), 0);
	assert_true(stats_of(src).cache_bytes > 0);
	source_close(src);
	stripe_source_destroy(src);
	free(buf);
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_golden_plain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_golden_snappy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_golden_xts_kek, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_golden_snappy_xts_kek, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_golden_snappy_xts_nokek, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tampered_object_fails_its_stripe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_object_fails_its_stripe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_object_fails_its_stripe, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_tampered_stripe_hashes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_archive_kek, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_format_version_99, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stripe_size_mismatch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_mapping, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_objects_one_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_encrypted_object_not_clobbered, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_full_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_absent_stripe_zeros_and_wakes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_size_fits_disk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_with_gets_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_object_kept_for_later_stripe, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_kept_objects_evicted_least_recently_used, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_kept_encrypted_object_decodes_per_stripe, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_shared_object_not_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_drops_kept_objects, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The archive format against golden archives written independently in
 * Python (tests/archive-golden/make_golden.py): every object, metadata.json
 * and stripe-hashes.json is decoded to the disk's bytes, and encoding the
 * same disk gives the same files byte for byte. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "archive/archive.h"

#define STRIPE_SECTORS 16u
#define STRIPE_BYTES   (STRIPE_SECTORS * 512u)
#define STRIPE_COUNT   7u

struct file {
	uint8_t *data;
	size_t len;
};

static struct file read_file(const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s%s%s", ARCHIVE_GOLDEN_DIR, dir, *dir ? "/" : "", name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	struct file out = {0};
	fseek(f, 0, SEEK_END);
	out.len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	out.data = malloc(out.len + 1);
	assert_non_null(out.data);
	assert_int_equal(fread(out.data, 1, out.len, f), out.len);
	out.data[out.len] = 0;
	fclose(f);
	return out;
}

static void golden_keys(uint8_t key1[32], uint8_t key2[32])
{
	const char *k1 = "archive golden key1", *k2 = "archive golden key2";
	archive_sha256((const uint8_t *)k1, strlen(k1), key1);
	archive_sha256((const uint8_t *)k2, strlen(k2), key2);
}

static void load_kek(bool none, struct kek *kek)
{
	struct error err = {0};
	if (none) {
		kek_init_none(kek);
		return;
	}
	/* Parsed from memory: git does not keep the file's mode 0600, which
	 * kek_load insists on. */
	struct file text = read_file("", "kek.yaml");
	int rc = kek_parse((char *)text.data, text.len, kek, &err);
	free(text.data);
	if (rc)
		fail_msg("%s", err.text);
}

/* Decodes every archived stripe of `dir` and compares with plain.bin; then
 * encodes plain.bin with the same parameters and compares every file. */
static void check_archive(const char *dir, bool kek_none, enum archive_compression comp,
			  bool encrypted)
{
	struct error err = {0};
	struct file meta_text = read_file(dir, ARCHIVE_METADATA_NAME);
	struct file map_text = read_file(dir, ARCHIVE_STRIPE_HASHES_NAME);
	struct file disk = read_file("", "plain.bin");
	assert_int_equal(disk.len, STRIPE_COUNT * STRIPE_BYTES);

	struct archive_metadata meta;
	if (archive_metadata_parse((char *)meta_text.data, meta_text.len, &meta, &err))
		fail_msg("%s: %s", dir, err.text);
	assert_int_equal(meta.format_version, 1);
	assert_int_equal(meta.stripe_sector_count, STRIPE_SECTORS);
	assert_int_equal(meta.compression, comp);
	assert_int_equal(meta.wrapped_key[0].present, encrypted);

	struct kek kek;
	load_kek(kek_none, &kek);
	uint8_t key1[32], key2[32], want1[32], want2[32];
	golden_keys(want1, want2);
	struct archive_codec codec = {.stripe_sector_count = STRIPE_SECTORS, .compression = comp};
	if (encrypted) {
		if (archive_keys_unwrap(&kek, &meta, key1, key2, &err))
			fail_msg("%s: %s", dir, err.text);
		assert_memory_equal(key1, want1, 32);
		assert_memory_equal(key2, want2, 32);
		assert_int_equal(xts_cipher_new(key1, key2, &codec.xts, &err), 0);
	}

	/* metadata.json written from the parsed values, and from freshly
	 * wrapped keys: the fixed nonce makes the wrap deterministic. */
	char *text = NULL;
	assert_int_equal(archive_metadata_write(&meta, &text, &err), 0);
	assert_string_equal(text, (char *)meta_text.data);
	free(text);
	struct archive_metadata fresh = {
	    .format_version = 1, .stripe_sector_count = STRIPE_SECTORS, .compression = comp};
	if (encrypted)
		assert_int_equal(archive_keys_wrap(&kek, want1, want2, &fresh, &err), 0);
	assert_int_equal(archive_metadata_write(&fresh, &text, &err), 0);
	assert_string_equal(text, (char *)meta_text.data);
	free(text);
	archive_metadata_free(&fresh);

	struct archive_stripe_map map;
	if (archive_stripe_map_parse((char *)map_text.data, map_text.len, &map, &err))
		fail_msg("%s: %s", dir, err.text);
	assert_int_equal(map.count, STRIPE_COUNT - 1);

	struct archive_stripe_map built = {0};
	uint8_t buf[STRIPE_BYTES];
	size_t cap = archive_object_bound(&codec, STRIPE_BYTES);
	uint8_t *enc = malloc(cap);
	assert_non_null(enc);
	for (uint64_t i = 0; i < STRIPE_COUNT; i++) {
		const uint8_t *plain = disk.data + i * STRIPE_BYTES;
		const struct archive_stripe_hash *e = archive_stripe_map_find(&map, i);
		if (i == 3) {
			assert_null(e);
			continue;
		}
		assert_non_null(e);
		char name[ARCHIVE_OBJECT_NAME_SIZE];
		archive_object_name(e->hash, name);
		struct file obj = read_file(dir, name);

		/* encode: the same bytes, the same name */
		size_t n = 0;
		uint8_t hash[ARCHIVE_HASH_BYTES];
		if (archive_object_encode(&codec, i, plain, STRIPE_BYTES, enc, cap, &n, hash, &err))
			fail_msg("%s stripe %u: %s", dir, (unsigned)i, err.text);
		assert_int_equal(n, obj.len);
		assert_memory_equal(enc, obj.data, n);
		assert_memory_equal(hash, e->hash, ARCHIVE_HASH_BYTES);
		assert_int_equal(archive_stripe_map_put(&built, i, hash), 0);

		/* decode (clobbers obj.data) */
		memset(buf, 0xee, sizeof(buf));
		if (archive_object_decode(&codec, i, e->hash, obj.data, obj.len, buf, sizeof(buf),
					  &err))
			fail_msg("%s stripe %u: %s", dir, (unsigned)i, err.text);
		assert_memory_equal(buf, plain, STRIPE_BYTES);
		free(obj.data);
	}
	assert_int_equal(archive_stripe_map_write(&built, &text, &err), 0);
	assert_string_equal(text, (char *)map_text.data);
	free(text);

	free(enc);
	archive_stripe_map_free(&built);
	archive_stripe_map_free(&map);
	xts_cipher_free(codec.xts);
	kek_free(&kek);
	archive_metadata_free(&meta);
	free(meta_text.data);
	free(map_text.data);
	free(disk.data);
}

static void test_plain(void **state)
{
	(void)state;
	check_archive("plain", true, ARCHIVE_COMPRESSION_NONE, false);
}

static void test_snappy(void **state)
{
	(void)state;
	check_archive("snappy", true, ARCHIVE_COMPRESSION_SNAPPY, false);
}

static void test_xts_kek(void **state)
{
	(void)state;
	check_archive("xts-kek", false, ARCHIVE_COMPRESSION_NONE, true);
}

static void test_snappy_xts_kek(void **state)
{
	(void)state;
	check_archive("snappy-xts-kek", false, ARCHIVE_COMPRESSION_SNAPPY, true);
}

static void test_snappy_xts_nokek(void **state)
{
	(void)state;
	check_archive("snappy-xts-nokek", true, ARCHIVE_COMPRESSION_SNAPPY, true);
}

/* The wrong KEK never yields keys. */
static void test_wrong_kek(void **state)
{
	(void)state;
	struct error err = {0};
	struct file meta_text = read_file("snappy-xts-kek", ARCHIVE_METADATA_NAME);
	struct archive_metadata meta;
	assert_int_equal(archive_metadata_parse((char *)meta_text.data, meta_text.len, &meta, &err),
			 0);
	struct kek kek;
	load_kek(false, &kek);
	kek.key.data[0] ^= 1;
	uint8_t key1[32], key2[32];
	assert_true(archive_keys_unwrap(&kek, &meta, key1, key2, &err) < 0);
	assert_non_null(strstr(err.text, "Failed to decrypt data"));
	/* method none: the 48-byte wrapped value is no 32-byte key */
	struct kek none;
	kek_init_none(&none);
	assert_int_equal(archive_keys_unwrap(&none, &meta, key1, key2, &err), -EINVAL);
	assert_non_null(strstr(err.text, "Key length must be exactly 32 bytes"));
	kek_free(&kek);
	archive_metadata_free(&meta);
	free(meta_text.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_snappy),
	    cmocka_unit_test(test_xts_kek),
	    cmocka_unit_test(test_snappy_xts_kek),
	    cmocka_unit_test(test_snappy_xts_nokek),
	    cmocka_unit_test(test_wrong_kek),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

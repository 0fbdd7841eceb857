/* The archive format's parsers, writers and decoders: every error text,
 * snappy framing edge cases and the known-answer vectors. */
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

static void metadata_fails(const char *json, const char *expected)
{
	struct error err = {0};
	struct archive_metadata m;
	assert_int_equal(archive_metadata_parse(json, strlen(json), &m, &err), -EINVAL);
	if (!strstr(err.text, expected))
		fail_msg("%s: got \"%s\", want \"%s\"", json, err.text, expected);
	archive_metadata_free(&m);
}

static void test_metadata_parse(void **state)
{
	(void)state;
	struct error err = {0};
	struct archive_metadata m;
	const char *j = "{\"stripe_sector_count\":2048,\"format_version\":1,\"extra\":[1]}";
	assert_int_equal(archive_metadata_parse(j, strlen(j), &m, &err), 0);
	assert_int_equal(m.format_version, 1);
	assert_int_equal(m.stripe_sector_count, 2048);
	assert_int_equal(m.compression, ARCHIVE_COMPRESSION_NONE);
	assert_false(m.wrapped_key[0].present);
	char *out;
	assert_int_equal(archive_metadata_write(&m, &out, &err), 0);
	assert_string_equal(out, "{\"format_version\":1,\"stripe_sector_count\":2048,"
				 "\"encryption_key\":null,\"compression\":\"none\"}");
	free(out);
	archive_metadata_free(&m);

	j = "{\"format_version\":1,\"stripe_sector_count\":16,\"encryption_key\":[\"AAEC\","
	    "\"AwQF\"],\"compression\":\"snappy\"}";
	assert_int_equal(archive_metadata_parse(j, strlen(j), &m, &err), 0);
	assert_int_equal(m.compression, ARCHIVE_COMPRESSION_SNAPPY);
	assert_int_equal(m.wrapped_key[1].len, 3);
	assert_int_equal(m.wrapped_key[1].data[2], 5);
	assert_int_equal(archive_metadata_write(&m, &out, &err), 0);
	assert_string_equal(out, j);
	free(out);
	archive_metadata_free(&m);
}

static void test_metadata_errors(void **state)
{
	(void)state;
	metadata_fails("{\"stripe_sector_count\":16}",
		       "failed to parse archive metadata: missing field `format_version`");
	metadata_fails("{\"format_version\":1}", "missing field `stripe_sector_count`");
	struct error err = {0};
	struct archive_metadata m;
	const char *j = "{\"format_version\":99,\"stripe_sector_count\":16}";
	assert_int_equal(archive_metadata_parse(j, strlen(j), &m, &err), -EINVAL);
	assert_string_equal(err.text, "unsupported archive format version 99 (supported 1..=1)");
	archive_metadata_free(&m);
	metadata_fails("{\"format_version\":1,\"stripe_sector_count\":16,\"compression\":\"zstd\"}",
		       "unknown variant `zstd`, expected `none` or `snappy`");
	metadata_fails(
	    "{\"format_version\":1,\"stripe_sector_count\":16,\"encryption_key\":[\"AA==\"]}",
	    "encryption_key must be null or an array of 2 strings");
	metadata_fails(
	    "{\"format_version\":1,\"stripe_sector_count\":16,\"encryption_key\":[\"%\",\"AA==\"]}",
	    "Invalid symbol 37, offset 0.");
	metadata_fails("{\"format_version\":1,\"stripe_sector_count\":0}", "must not be 0");
	metadata_fails("{\"format_version\":-1,\"stripe_sector_count\":16}", "`format_version`");
	metadata_fails("[]", "failed to parse archive metadata: expected a JSON object");
	metadata_fails("{", "failed to parse archive metadata: ");
}

static void test_stripe_map(void **state)
{
	(void)state;
	struct error err = {0};
	struct archive_stripe_map m;
	const char *h = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
	char j[512];
	snprintf(j, sizeof(j), "{\"5\":\"%s\",\"0\":\"%s\"}", h, h);
	assert_int_equal(archive_stripe_map_parse(j, strlen(j), &m, &err), 0);
	assert_int_equal(m.count, 2);
	assert_non_null(archive_stripe_map_find(&m, 0));
	assert_non_null(archive_stripe_map_find(&m, 5));
	assert_null(archive_stripe_map_find(&m, 1));
	uint64_t sectors;
	assert_int_equal(archive_stripe_map_sector_count(&m, 2048, &sectors, &err), 0);
	assert_int_equal(sectors, 6 * 2048);
	char *out;
	assert_int_equal(archive_stripe_map_write(&m, &out, &err), 0);
	snprintf(j, sizeof(j), "{\"0\":\"%s\",\"5\":\"%s\"}", h, h);
	assert_string_equal(out, j);
	free(out);
	archive_stripe_map_free(&m);

	assert_int_equal(archive_stripe_map_parse("{}", 2, &m, &err), 0);
	assert_int_equal(m.count, 0);
	assert_null(archive_stripe_map_find(&m, 0));
	assert_int_equal(archive_stripe_map_sector_count(&m, 2048, &sectors, &err), 0);
	assert_int_equal(sectors, 0);
	assert_int_equal(archive_stripe_map_write(&m, &out, &err), 0);
	assert_string_equal(out, "{}");
	free(out);
	archive_stripe_map_free(&m);

	/* the largest index parses, but covers more sectors than exist */
	snprintf(j, sizeof(j), "{\"18446744073709551615\":\"%s\"}", h);
	assert_int_equal(archive_stripe_map_parse(j, strlen(j), &m, &err), 0);
	assert_int_equal(archive_stripe_map_sector_count(&m, 1, &sectors, &err), -ERANGE);
	archive_stripe_map_free(&m);
	snprintf(j, sizeof(j), "{\"18446744073709551616\":\"%s\"}", h);
	assert_int_equal(archive_stripe_map_parse(j, strlen(j), &m, &err), -EINVAL);
	archive_stripe_map_free(&m);

	const char *bad[] = {
	    "{\"1\":5}",
	    "{\"x\":\"30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58\"}",
	    "{\"1\":\"30E14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58\"}",
	    "{\"1\":\"../../etc/passwd\"}",
	    "{\"1\":\"30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58\","
	    "\"01\":\"30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58\"}",
	    "[]",
	    "{",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(archive_stripe_map_parse(bad[i], strlen(bad[i]), &m, &err),
				 -EINVAL);
		if (strncmp(err.text, "failed to parse stripe-hashes.json", 34) != 0)
			fail_msg("%s: %s", bad[i], err.text);
		archive_stripe_map_free(&m);
	}
}

/* The files come from a store: text they quote into a message (a key, a
 * value, jansson's "near '...'") must not break the message's one line.
 * Found by fuzzing (fuzz/regressions/archive-stripe-hashes). */
static void test_errors_stay_one_line(void **state)
{
	(void)state;
	const char *maps[] = {"{\"a\\nb\":\"x\"}", "{\"0\":1\n\x07}", "\x1b[31m"};
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		struct error err = {0};
		struct archive_stripe_map m;
		assert_int_equal(archive_stripe_map_parse(maps[i], strlen(maps[i]), &m, &err),
				 -EINVAL);
		for (const char *p = err.text; *p; p++)
			if ((unsigned char)*p < 0x20)
				fail_msg("%s: control character in \"%s\"", maps[i], err.text);
		archive_stripe_map_free(&m);
	}
	struct error err = {0};
	struct archive_stripe_map m;
	assert_int_equal(archive_stripe_map_parse(maps[0], strlen(maps[0]), &m, &err), -EINVAL);
	assert_string_equal(
	    err.text, "failed to parse stripe-hashes.json: key \"a?b\" is not a stripe index");
	archive_stripe_map_free(&m);

	const char *metas[] = {
	    "{\"format_version\":1,\"stripe_sector_count\":16,\"compression\":\"a\\nb\"}",
	    "{\"format_version\":1,\x07}"};
	for (size_t i = 0; i < sizeof(metas) / sizeof(metas[0]); i++) {
		struct archive_metadata md;
		assert_int_equal(archive_metadata_parse(metas[i], strlen(metas[i]), &md, &err),
				 -EINVAL);
		for (const char *p = err.text; *p; p++)
			if ((unsigned char)*p < 0x20)
				fail_msg("%s: control character in \"%s\"", metas[i], err.text);
		archive_metadata_free(&md);
	}
	metadata_fails(metas[0], "unknown variant `a?b`, expected `none` or `snappy`");
}

static void test_hashes(void **state)
{
	(void)state;
	uint8_t h[ARCHIVE_HASH_BYTES], back[ARCHIVE_HASH_BYTES];
	char hex[ARCHIVE_HASH_HEX_LEN + 1], name[ARCHIVE_OBJECT_NAME_SIZE];
	archive_sha256((const uint8_t *)"hello world", 11, h);
	archive_hash_hex(h, hex);
	assert_string_equal(hex,
			    "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
	assert_true(archive_hash_parse(hex, strlen(hex), back));
	assert_memory_equal(h, back, sizeof(h));
	assert_false(archive_hash_parse(hex, 63, back));
	archive_object_name(h, name);
	assert_string_equal(
	    name, "data/b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");

	/* every all-zero 1 MiB uncompressed stripe of an unencrypted archive */
	uint8_t *zeros = calloc(1, 1 << 20);
	assert_non_null(zeros);
	archive_sha256(zeros, 1 << 20, h);
	archive_hash_hex(h, hex);
	assert_string_equal(hex,
			    "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58");
	free(zeros);
}

static void test_key_wrap_vector(void **state)
{
	(void)state;
	struct error err = {0};
	const char *yaml = "method: aes256-gcm\n"
			   "key: ERERERERERERERERERERERERERERERERERERERERERE=\n"
			   "init_vector: IiIiIiIiIiIiIiIi\n"
			   "auth_data: dGVzdC1hYWQ=\n";
	struct kek kek;
	assert_int_equal(kek_parse(yaml, strlen(yaml), &kek, &err), 0);
	uint8_t key1[32], key2[32], out1[32], out2[32];
	memset(key1, 0xaa, 32);
	memset(key2, 0x55, 32);
	struct archive_metadata m = {.format_version = 1, .stripe_sector_count = 2048};
	assert_int_equal(archive_keys_wrap(&kek, key1, key2, &m, &err), 0);
	static const uint8_t want[48] = {0xbd, 0x5d, 0xad, 0xe3, 0x6a, 0x65, 0x35, 0xf5, 0x4f, 0x95,
					 0x74, 0x96, 0xe2, 0x0c, 0x43, 0x7f, 0xb5, 0x39, 0x67, 0x48,
					 0xc0, 0x2b, 0x06, 0xe1, 0xf8, 0xe5, 0xa0, 0x42, 0xa3, 0x4b,
					 0xcf, 0xa9, 0xfe, 0xe2, 0xc3, 0x2d, 0xfc, 0xfc, 0x84, 0x2d,
					 0xc7, 0x00, 0x98, 0x60, 0x61, 0xd4, 0x31, 0xb0};
	assert_int_equal(m.wrapped_key[0].len, 48);
	assert_memory_equal(m.wrapped_key[0].data, want, 48);
	assert_int_equal(archive_keys_unwrap(&kek, &m, out1, out2, &err), 0);
	assert_memory_equal(out1, key1, 32);
	assert_memory_equal(out2, key2, 32);
	m.wrapped_key[1].data[47] ^= 1; /* the tag */
	assert_true(archive_keys_unwrap(&kek, &m, out1, out2, &err) < 0);
	assert_non_null(strstr(err.text, "Failed to decrypt data"));
	archive_metadata_free(&m);
	assert_int_equal(archive_keys_unwrap(&kek, &m, out1, out2, &err), -ENOENT);

	/* method none: the keys in clear */
	struct kek none;
	kek_init_none(&none);
	assert_int_equal(archive_keys_wrap(&none, key1, key2, &m, &err), 0);
	assert_int_equal(m.wrapped_key[0].len, 32);
	assert_memory_equal(m.wrapped_key[1].data, key2, 32);
	archive_metadata_free(&m);
	kek_free(&kek);
}

static void unframe_fails(const uint8_t *body, size_t len, const char *expected)
{
	struct error err = {0};
	uint8_t out[1024];
	size_t n;
	assert_int_equal(archive_snappy_unframe(body, len, out, sizeof(out), &n, &err), -EIO);
	if (!strstr(err.text, expected))
		fail_msg("got \"%s\", want \"%s\"", err.text, expected);
}

static void test_snappy_framing(void **state)
{
	(void)state;
	struct error err = {0};
	uint8_t in[5120], out[8192], back[5120];
	memset(in, 0xff, sizeof(in));
	size_t n = 0, m = 0;
	assert_int_equal(archive_snappy_frame(in, sizeof(in), out, sizeof(out), &n, &err), 0);
	assert_int_equal(n % 512, 0);
	assert_true(n < sizeof(in));
	uint32_t clen = (uint32_t)out[0] | (uint32_t)out[1] << 8 | (uint32_t)out[2] << 16 |
			(uint32_t)out[3] << 24;
	for (size_t i = 4 + clen; i < n; i++)
		assert_int_equal(out[i], 0);
	assert_int_equal(archive_snappy_unframe(out, n, back, sizeof(back), &m, &err), 0);
	assert_int_equal(m, sizeof(in));
	assert_memory_equal(back, in, sizeof(in));
	/* decoding into too small a buffer fails instead of overflowing */
	assert_int_equal(archive_snappy_unframe(out, n, back, 512, &m, &err), -EIO);

	assert_int_equal(archive_snappy_frame(in, 100, out, sizeof(out), &n, &err), -EINVAL);
	assert_string_equal(err.text, "Data length must be a multiple of sector size");

	uint8_t zeros[16] = {0};
	unframe_fails(zeros, 16, "snappy: corrupt input");
	unframe_fails(zeros, 3, "Data too short to contain size header");
	uint8_t hdr[8] = {16, 0, 0, 0};
	unframe_fails(hdr, 8, "Compressed size 16 exceeds available data 4");
	uint8_t huge[8] = {0xff, 0xff, 0xff, 0xff};
	unframe_fails(huge, 8, "Compressed size 4294967295 exceeds available data 4");
	/* a varint length that promises more than the block holds */
	uint8_t lying[8] = {3, 0, 0, 0, 0x80, 0x02, 0x00};
	unframe_fails(lying, 8, "snappy: corrupt input");
}

static void test_object_errors(void **state)
{
	(void)state;
	struct error err = {0};
	uint8_t key1[32], key2[32];
	memset(key1, 1, 32);
	memset(key2, 2, 32);
	struct archive_codec c = {.stripe_sector_count = 2,
				  .compression = ARCHIVE_COMPRESSION_NONE};
	uint8_t plain[1024], obj[1024], buf[2048], hash[ARCHIVE_HASH_BYTES];
	size_t n;
	memset(plain, 0, sizeof(plain));
	/* XTS from sector stripe * stripe_sector_count (the known answer for
	 * key1 = 32x01, key2 = 32x02, sector 5, zeros) */
	assert_int_equal(xts_cipher_new(key1, key2, &c.xts, &err), 0);
	c.stripe_sector_count = 5;
	assert_int_equal(archive_object_encode(&c, 1, plain, 512, obj, sizeof(obj), &n, hash, &err),
			 0);
	static const uint8_t first[16] = {0x8c, 0x74, 0x48, 0x6d, 0xf0, 0x50, 0x88, 0x3c,
					  0xde, 0x46, 0x07, 0x66, 0xe7, 0x25, 0x7a, 0x92};
	assert_memory_equal(obj, first, 16);
	/* decode into a larger buffer: the tail is zero-filled */
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(archive_object_decode(&c, 1, hash, obj, n, buf, sizeof(buf), &err), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);

	/* hash first */
	assert_int_equal(archive_object_encode(&c, 1, plain, 512, obj, sizeof(obj), &n, hash, &err),
			 0);
	obj[7] ^= 1;
	assert_int_equal(archive_object_decode(&c, 1, hash, obj, n, buf, sizeof(buf), &err), -EIO);
	assert_string_equal(err.text, "sha256 hash mismatch for stripe 1");
	/* an encrypted object not made of whole sectors */
	archive_sha256(obj, 100, hash);
	assert_int_equal(archive_object_decode(&c, 1, hash, obj, 100, buf, sizeof(buf), &err),
			 -EIO);
	assert_string_equal(err.text,
			    "Stripe 1 data size 100 is not a multiple of sector size 512");
	xts_cipher_free(c.xts);
	c.xts = NULL;
	/* longer than the buffer */
	archive_sha256(obj, 1024, hash);
	assert_int_equal(archive_object_decode(&c, 3, hash, obj, 1024, buf, 512, &err), -EIO);
	assert_string_equal(err.text, "Stripe 3 data size 1024 exceeds buffer size 512");
	c.compression = ARCHIVE_COMPRESSION_SNAPPY;
	assert_int_equal(archive_object_encode(&c, 3, plain, 1024, obj,
					       archive_object_bound(&c, 1024), &n, hash, &err),
			 0);
	assert_int_equal(archive_object_decode(&c, 3, hash, obj, n, buf, 512, &err), -EIO);
	assert_string_equal(err.text, "Stripe 3 data size 1024 exceeds buffer size 512");
	/* not whole sectors */
	assert_int_equal(archive_object_encode(&c, 3, plain, 100, obj, sizeof(obj), &n, hash, &err),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_metadata_parse),  cmocka_unit_test(test_metadata_errors),
	    cmocka_unit_test(test_stripe_map),	    cmocka_unit_test(test_hashes),
	    cmocka_unit_test(test_key_wrap_vector), cmocka_unit_test(test_snappy_framing),
	    cmocka_unit_test(test_object_errors),   cmocka_unit_test(test_errors_stay_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The KEK file and wrapping secrets with it, checked against known wrapped
 * values: the test keys and others wrapped under ubiblk's README example KEK
 * and an archive_kek. */
#include "config_test_util.h"

static const uint8_t key1[32] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
				 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
				 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};

static struct bytes decode(const char *b64)
{
	struct error err = {0};
	struct bytes out;
	if (base64_decode(b64, true, &out, &err))
		fail_msg("%s: %s", b64, err.text);
	return out;
}

static void kek_from_yaml(const char *yaml, struct kek *kek)
{
	struct error err = {0};
	if (kek_parse(yaml, strlen(yaml), kek, &err))
		fail_msg("%s", err.text);
}

static void kek_parse_fails(const char *yaml, const char *expected)
{
	struct error err = {0};
	struct kek kek;
	assert_int_equal(kek_parse(yaml, strlen(yaml), &kek, &err), -EINVAL);
	assert_string_equal(err.text, expected);
	assert_false(kek.key.present);
}

/* Unwraps the base64 `wrapped` with kek and compares with plain. */
static void unwrap_equals(const struct kek *kek, const char *wrapped, const void *plain,
			  size_t plain_len)
{
	struct error err = {0};
	struct bytes in = decode(wrapped);
	struct bytes out;
	if (kek_unwrap(kek, in.data, in.len, &out, &err))
		fail_msg("%s: %s", wrapped, err.text);
	assert_true(out.present);
	assert_int_equal(out.len, plain_len);
	assert_memory_equal(out.data, plain, plain_len);
	bytes_free(&out);
	bytes_free(&in);
}

static void unwrap_fails(const struct kek *kek, const uint8_t *in, size_t len, const char *expected)
{
	struct error err = {0};
	struct bytes out;
	assert_int_equal(kek_unwrap(kek, in, len, &out, &err), -EINVAL);
	assert_string_equal(err.text, expected);
	assert_false(out.present);
	assert_null(out.data);
}

static void test_parse_example_kek(void **state)
{
	(void)state;
	static const uint8_t key[32] = {0xc0, 0x72, 0x92, 0x14, 0x1b, 0x11, 0x5d, 0x6f,
					0xd5, 0x3c, 0xbb, 0x09, 0x2a, 0x5f, 0xe6, 0x9e,
					0xc3, 0x2c, 0xed, 0x7d, 0xcf, 0xb7, 0xc3, 0x56,
					0x8f, 0x36, 0x64, 0x72, 0x1f, 0x0a, 0xbb, 0xad};
	static const uint8_t iv[12] = {0x50, 0x4b, 0x7e, 0xc0, 0x8f, 0x8b,
				       0x76, 0xad, 0x54, 0x81, 0x0f, 0xcf};
	struct kek kek;

	test_kek(&kek);
	assert_int_equal(kek.method, KEK_METHOD_AES256_GCM);
	assert_int_equal(kek.key.len, 32);
	assert_memory_equal(kek.key.data, key, 32);
	assert_int_equal(kek.init_vector.len, 12);
	assert_memory_equal(kek.init_vector.data, iv, 12);
	assert_int_equal(kek.auth_data.len, 10);
	assert_memory_equal(kek.auth_data.data, "vm3jgez8_0", 10);
	kek_free(&kek);
	assert_false(kek.key.present);
	assert_int_equal(kek.method, KEK_METHOD_NONE);
}

static void test_parse_kek_field_rules(void **state)
{
	(void)state;
	struct kek kek;

	/* Padding optional; unknown keys ignored; null = absent; "" = empty. */
	kek_from_yaml("method: none\nkey: AQ\ninit_vector: ~\nauth_data: \"\"\ncomment: x\n", &kek);
	assert_int_equal(kek.method, KEK_METHOD_NONE);
	assert_true(kek.key.present);
	assert_int_equal(kek.key.len, 1);
	assert_int_equal(kek.key.data[0], 1);
	assert_false(kek.init_vector.present);
	assert_true(kek.auth_data.present);
	assert_int_equal(kek.auth_data.len, 0);
	kek_free(&kek);

	kek_from_yaml("method: \"aes256-gcm\"\n", &kek);
	assert_int_equal(kek.method, KEK_METHOD_AES256_GCM);
	assert_false(kek.key.present);
	kek_free(&kek);

	kek_init_none(&kek);
	assert_int_equal(kek.method, KEK_METHOD_NONE);
	assert_false(kek.key.present || kek.init_vector.present || kek.auth_data.present);
}

static void test_parse_kek_errors(void **state)
{
	(void)state;
	kek_parse_fails("key: AQ==\n", "Error parsing KEK: missing field `method`");
	kek_parse_fails("", "Error parsing KEK: missing field `method`");
	kek_parse_fails("method: AES256-GCM\n",
			"Error parsing KEK: method: unknown variant `AES256-GCM`, expected `none` "
			"or `aes256-gcm` at line 1 column 9");
	kek_parse_fails("method: ~\n", "Error parsing KEK: method: invalid type: unit value, "
				       "expected `none` or `aes256-gcm` at line 1 column 9");
	kek_parse_fails("method: none\nkey: \"%%%\"\n",
			"Error parsing KEK: key: Invalid symbol 37, offset 0. at line 2 column 6");
	kek_parse_fails("method: none\nkey: [1]\n",
			"Error parsing KEK: key: invalid type: "
			"sequence, expected a string at line 2 column 6");
	kek_parse_fails(
	    "- method: none\n",
	    "Error parsing KEK: invalid type: sequence, expected a map at line 1 column 1");
}

static void test_load_kek_file(void **state)
{
	(void)state;
	struct error err = {0};
	struct kek kek;
	char *path = write_temp_file(TEST_KEK_YAML);

	assert_int_equal(kek_load(path, &kek, &err), 0);
	assert_int_equal(kek.method, KEK_METHOD_AES256_GCM);
	assert_int_equal(kek.key.len, 32);
	kek_free(&kek);
	remove_temp_file(path);

	assert_int_equal(kek_load("/nonexistent/kek.yaml", &kek, &err), -ENOENT);
	assert_string_equal(err.text,
			    "Failed to read KEK file /nonexistent/kek.yaml: No such file or "
			    "directory");

	path = write_temp_file("method: none\nkey: [unclosed\n");
	assert_int_equal(kek_load(path, &kek, &err), -EINVAL);
	char expected[ERROR_TEXT_MAX];
	snprintf(expected, sizeof(expected), "Error parsing KEK file %s: ", path);
	assert_memory_equal(err.text, expected, strlen(expected));
	assert_non_null(strstr(err.text, " at line 3 column 1"));
	remove_temp_file(path);
}

static void test_unwrap_worked_vectors(void **state)
{
	(void)state;
	static const uint8_t key2[32] = {0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
					 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
					 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
					 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
	uint8_t thirty_three[32], forty_four[12];
	struct kek kek;

	memset(thirty_three, 0x33, sizeof(thirty_three));
	memset(forty_four, 0x44, sizeof(forty_four));
	test_kek(&kek);
	unwrap_equals(&kek, KEY1_WRAPPED_B64, key1, 32);
	unwrap_equals(&kek, KEY2_WRAPPED_B64, key2, 32);
	unwrap_equals(&kek, "n4samF07axobZwoVw02cRCrZtk8JgNofYExifqxMzL4=", "0123456789ABCDEF", 16);
	unwrap_equals(&kek, "7vFh6ixWHGBzEg5zwT7Otw0pQWkTFBbwrGj9", "AKIAEXAMPLE", 11);
	unwrap_equals(&kek, "nIkbmFo9bh4QbXhkszrqMVlkvLkQw8I1/dLraPYrXv9f6PlS5oHnciLB5ry+7EQh",
		      thirty_three, 32);
	unwrap_equals(&kek, "6/5s7y1KGWlnGg8Ty1cOHTqO8TWrMK9QhS/L3Q==", forty_four, 12);
	unwrap_equals(&kek, "zshLwwB4OABCPy+xwQz3cQqSdHhqaYy8I8gw", "archive-aad", 11);
	kek_free(&kek);
}

static void test_wrap_is_deterministic_and_matches_vectors(void **state)
{
	(void)state;
	struct error err = {0};
	struct kek kek, archive_kek;
	struct bytes wrapped;
	char *text = NULL;

	test_kek(&kek);
	assert_int_equal(kek_wrap(&kek, key1, sizeof(key1), &wrapped, &err), 0);
	assert_int_equal(base64_encode(wrapped.data, wrapped.len, &text), 0);
	assert_string_equal(text, KEY1_WRAPPED_B64);
	free(text);
	bytes_free(&wrapped);

	/* An archive_kek (key 32 x 0x33, nonce 12 x 0x44) wrapping key1 as an
	 * archive's metadata.json stores it. */
	kek_from_yaml("method: aes256-gcm\n"
		      "key: MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM\n"
		      "init_vector: RERERERERERERERE\n"
		      "auth_data: YXJjaGl2ZS1hYWQ\n",
		      &archive_kek);
	assert_int_equal(kek_wrap(&archive_kek, key1, sizeof(key1), &wrapped, &err), 0);
	assert_int_equal(base64_encode(wrapped.data, wrapped.len, &text), 0);
	assert_string_equal(text,
			    "MbKB9UOtQoShoeH1fzYHnhuvVO3pdHKk5G2XFJdKz2jCBGS1pgk6gw/XG+EIN2Gp");
	free(text);
	bytes_free(&wrapped);
	kek_free(&archive_kek);
	kek_free(&kek);
}

static void test_flipped_tag_is_rejected(void **state)
{
	(void)state;
	struct kek kek;
	struct bytes in = decode(KEY1_WRAPPED_B64);

	test_kek(&kek);
	in.data[in.len - 1] ^= 1;
	unwrap_fails(&kek, in.data, in.len, "Failed to decrypt data: aead::Error");
	in.data[in.len - 1] ^= 1;
	in.data[0] ^= 0x80; /* ciphertext too */
	unwrap_fails(&kek, in.data, in.len, "Failed to decrypt data: aead::Error");
	/* Shorter than a tag. */
	unwrap_fails(&kek, in.data, 15, "Failed to decrypt data: aead::Error");
	bytes_free(&in);
	kek_free(&kek);
}

static void test_unwrap_check_order(void **state)
{
	(void)state;
	struct kek kek;
	uint8_t data[48] = {0};

	/* 1. key absent, even for empty input and with nothing else set. */
	kek_from_yaml("method: aes256-gcm\n", &kek);
	unwrap_fails(&kek, data, 0, "Key is required");
	kek_free(&kek);
	/* 2. init_vector absent (input too short for the nonce||ct||tag form). */
	kek_from_yaml("method: aes256-gcm\nkey: AQ==\n", &kek);
	unwrap_fails(&kek, data, 16, "Initialization vector is required");
	kek_free(&kek);
	/* 3. auth_data absent. */
	kek_from_yaml("method: aes256-gcm\nkey: AQ==\ninit_vector: AQ==\n", &kek);
	unwrap_fails(&kek, data, 48, "Authentication data is required");
	kek_free(&kek);
	/* 4. key length, checked before the IV length. */
	kek_from_yaml("method: aes256-gcm\nkey: AQ==\ninit_vector: AQ==\nauth_data: \"\"\n", &kek);
	unwrap_fails(&kek, data, 48, "Failed to initialize cipher: Invalid Length");
	kek_free(&kek);
	/* 5. an 11-byte IV. */
	kek_from_yaml("method: aes256-gcm\n"
		      "key: wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\n"
		      "init_vector: AAAAAAAAAAAAAAA=\n"
		      "auth_data: \"\"\n",
		      &kek);
	assert_int_equal(kek.init_vector.len, 11);
	unwrap_fails(&kek, data, 48, "Initialization vector must be exactly 12 bytes");
	kek_free(&kek);
}

static void test_method_none_returns_input(void **state)
{
	(void)state;
	struct error err = {0};
	struct kek kek;
	struct bytes out;

	/* Malformed key/IV are ignored with method none. */
	kek_from_yaml("method: none\nkey: AQ==\ninit_vector: AQ==\n", &kek);
	assert_int_equal(kek_unwrap(&kek, key1, sizeof(key1), &out, &err), 0);
	assert_int_equal(out.len, 32);
	assert_memory_equal(out.data, key1, 32);
	bytes_free(&out);
	assert_int_equal(kek_wrap(&kek, key1, 5, &out, &err), 0);
	assert_int_equal(out.len, 5);
	assert_memory_equal(out.data, key1, 5);
	bytes_free(&out);
	kek_free(&kek);

	/* A NULL KEK is the default KEK, method none; empty input stays empty. */
	assert_int_equal(kek_unwrap(NULL, key1, 0, &out, &err), 0);
	assert_true(out.present);
	assert_int_equal(out.len, 0);
	bytes_free(&out);
}

/* The fresh-nonce form nonce||ct||tag: accepted when the KEK has no
 * init_vector, or when the fixed-nonce form does not authenticate. */
static void test_unwrap_nonce_prefixed_form(void **state)
{
	(void)state;
	struct error err = {0};
	struct kek with_nonce, without_iv, example;
	struct bytes wrapped, out;
	uint8_t stored[12 + 32 + 16];

	kek_from_yaml("method: aes256-gcm\n"
		      "key: wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\n"
		      "init_vector: AAECAwQFBgcICQoL\n"
		      "auth_data: dm0zamdlejhfMA==\n",
		      &with_nonce);
	assert_int_equal(kek_wrap(&with_nonce, key1, 32, &wrapped, &err), 0);
	assert_int_equal(wrapped.len, 48);
	memcpy(stored, with_nonce.init_vector.data, 12);
	memcpy(stored + 12, wrapped.data, wrapped.len);
	bytes_free(&wrapped);

	kek_from_yaml("method: aes256-gcm\n"
		      "key: wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\n"
		      "auth_data: dm0zamdlejhfMA==\n",
		      &without_iv);
	assert_int_equal(kek_unwrap(&without_iv, stored, sizeof(stored), &out, &err), 0);
	assert_int_equal(out.len, 32);
	assert_memory_equal(out.data, key1, 32);
	bytes_free(&out);

	/* The example KEK has a different fixed nonce: falls back and succeeds. */
	test_kek(&example);
	assert_int_equal(kek_unwrap(&example, stored, sizeof(stored), &out, &err), 0);
	assert_memory_equal(out.data, key1, 32);
	bytes_free(&out);

	stored[sizeof(stored) - 1] ^= 1;
	unwrap_fails(&without_iv, stored, sizeof(stored), "Failed to decrypt data: aead::Error");
	unwrap_fails(&example, stored, sizeof(stored), "Failed to decrypt data: aead::Error");
	kek_free(&example);
	kek_free(&without_iv);
	kek_free(&with_nonce);
}

static void test_wrap_needs_complete_kek(void **state)
{
	(void)state;
	struct error err = {0};
	struct kek kek;
	struct bytes out;

	kek_from_yaml("method: aes256-gcm\n"
		      "key: wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\n"
		      "auth_data: dm0zamdlejhfMA==\n",
		      &kek);
	assert_int_equal(kek_wrap(&kek, key1, 32, &out, &err), -EINVAL);
	assert_string_equal(err.text, "Initialization vector is required");
	assert_false(out.present);
	kek_free(&kek);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_example_kek),
	    cmocka_unit_test(test_parse_kek_field_rules),
	    cmocka_unit_test(test_parse_kek_errors),
	    cmocka_unit_test(test_load_kek_file),
	    cmocka_unit_test(test_unwrap_worked_vectors),
	    cmocka_unit_test(test_wrap_is_deterministic_and_matches_vectors),
	    cmocka_unit_test(test_flipped_tag_is_rejected),
	    cmocka_unit_test(test_unwrap_check_order),
	    cmocka_unit_test(test_method_none_returns_input),
	    cmocka_unit_test(test_unwrap_nonce_prefixed_form),
	    cmocka_unit_test(test_wrap_needs_complete_kek),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Secrets in the device config unwrapped with the KEK at load, in their fixed
 * order, with known wrapped values under the README's example KEK. */
#include "config_test_util.h"

static const uint8_t key1[32] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
				 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
				 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
static const uint8_t key2[32] = {0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0xfe, 0xdc, 0xba,
				 0x98, 0x76, 0x54, 0x32, 0x10, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54,
				 0x32, 0x10, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};

#define WRAPPED_KEYS_YAML                                                                          \
	"path: disk.raw\n"                                                                         \
	"encryption_key:\n"                                                                        \
	"  - \"" KEY1_WRAPPED_B64 "\"\n"                                                           \
	"  - \"" KEY2_WRAPPED_B64 "\"\n"

static void test_wrapped_encryption_key_yields_xts_keys(void **state)
{
	(void)state;
	struct kek kek;
	struct device_config cfg;

	test_kek(&kek);
	parse_ok_kek(WRAPPED_KEYS_YAML, &kek, &cfg);
	assert_true(cfg.has_encryption_key);
	assert_memory_equal(cfg.encryption_key[0], key1, 32);
	assert_memory_equal(cfg.encryption_key[1], key2, 32);
	device_config_free(&cfg);
	kek_free(&kek);
}

static void test_plain_encryption_key_with_method_none(void **state)
{
	(void)state;
	struct device_config cfg;
	struct kek none;

	kek_init_none(&none);
	parse_ok_kek("path: d\nencryption_key: [\"" KEY1_B64 "\", \"" KEY2_B64 "\"]\n", &none,
		     &cfg);
	assert_memory_equal(cfg.encryption_key[0], key1, 32);
	assert_memory_equal(cfg.encryption_key[1], key2, 32);
	device_config_free(&cfg);

	/* The wrapped (48-byte) values without their KEK fail the length check. */
	parse_fails(WRAPPED_KEYS_YAML, "config: encryption_key[0]: Key length must be exactly 32 "
				       "bytes");
}

static void test_encryption_key_unwrap_errors(void **state)
{
	(void)state;
	struct kek kek, keyless;
	char yaml[512];

	test_kek(&kek);
	/* Flipped tag on the second key. */
	snprintf(yaml, sizeof(yaml),
		 "path: d\nencryption_key: [\"" KEY1_WRAPPED_B64 "\", \"%.*sXo\"]\n",
		 (int)strlen(KEY2_WRAPPED_B64) - 2, KEY2_WRAPPED_B64);
	parse_fails_kek(yaml, &kek,
			"config: encryption_key[1]: Failed to decrypt data: aead::Error");
	/* Plain keys are not valid GCM ciphertexts under the KEK. */
	parse_fails_kek("path: d\nencryption_key: [\"" KEY1_B64 "\", \"" KEY2_B64 "\"]\n", &kek,
			"encryption_key[0]: Failed to decrypt data: aead::Error");

	/* A 31-byte secret decrypts, then fails the XTS key length. */
	struct bytes wrapped;
	struct error err = {0};
	char *b64 = NULL;
	assert_int_equal(kek_wrap(&kek, key1, 31, &wrapped, &err), 0);
	assert_int_equal(base64_encode(wrapped.data, wrapped.len, &b64), 0);
	snprintf(yaml, sizeof(yaml),
		 "path: d\nencryption_key: [\"%s\", \"" KEY2_WRAPPED_B64 "\"]\n", b64);
	parse_fails_kek(yaml, &kek,
			"config: encryption_key[0]: Key length must be exactly 32 bytes");
	free(b64);
	bytes_free(&wrapped);

	assert_int_equal(kek_parse("method: aes256-gcm\n", 19, &keyless, &err), 0);
	parse_fails_kek(WRAPPED_KEYS_YAML, &keyless, "config: encryption_key[0]: Key is required");
	kek_free(&keyless);
	kek_free(&kek);
}

static void test_no_secrets_never_touch_the_kek(void **state)
{
	(void)state;
	struct error err = {0};
	struct kek keyless;
	struct device_config cfg;

	/* KEK values are checked lazily: no secret, no error. */
	assert_int_equal(kek_parse("method: aes256-gcm\n", 19, &keyless, &err), 0);
	parse_ok_kek("path: d\n", &keyless, &cfg);
	assert_false(cfg.has_encryption_key);
	device_config_free(&cfg);
	kek_free(&keyless);
}

static void test_remote_psk_secret_unwrapped(void **state)
{
	(void)state;
	struct kek kek;
	struct device_config cfg;

	test_kek(&kek);
	parse_ok_kek("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		     "stripe_source:\n  source: remote\n  address: \"10.0.0.1:4555\"\n"
		     "  psk_identity: client\n"
		     "  psk_secret: \"n4samF07axobZwoVw02cRCrZtk8JgNofYExifqxMzL4=\"\n",
		     &kek, &cfg);
	assert_int_equal(cfg.source.remote.psk_secret.len, 16);
	assert_memory_equal(cfg.source.remote.psk_secret.data, "0123456789ABCDEF", 16);
	device_config_free(&cfg);
	kek_free(&kek);
}

static void test_archive_secrets_unwrapped(void **state)
{
	(void)state;
	struct kek kek;
	struct device_config cfg;
	uint8_t thirty_three[32];

	memset(thirty_three, 0x33, sizeof(thirty_three));
	test_kek(&kek);
	parse_ok_kek(
	    "path: d\nmetadata_path: m\ncopy_on_read: true\n"
	    "stripe_source:\n  source: archive\n  type: s3\n  bucket: b\n"
	    "  credentials:\n"
	    "    access_key_id: \"7vFh6ixWHGBzEg5zwT7Otw0pQWkTFBbwrGj9\"\n"
	    "    secret_access_key: \"7vFh6ixWHGBzEg5zwT7Otw0pQWkTFBbwrGj9\"\n"
	    "    session_token: \"7vFh6ixWHGBzEg5zwT7Otw0pQWkTFBbwrGj9\"\n"
	    "  archive_kek:\n"
	    "    method: aes256-gcm\n"
	    "    key: \"nIkbmFo9bh4QbXhkszrqMVlkvLkQw8I1/dLraPYrXv9f6PlS5oHnciLB5ry+7EQh\"\n"
	    "    init_vector: \"6/5s7y1KGWlnGg8Ty1cOHTqO8TWrMK9QhS/L3Q==\"\n"
	    "    auth_data: \"zshLwwB4OABCPy+xwQz3cQqSdHhqaYy8I8gw\"\n",
	    &kek, &cfg);
	const struct archive_source_config *a = &cfg.source.archive;
	assert_string_equal(a->access_key_id, "AKIAEXAMPLE");
	assert_string_equal(a->secret_access_key, "AKIAEXAMPLE");
	assert_string_equal(a->session_token, "AKIAEXAMPLE");
	/* The method is plain; its values were unwrapped by the command-line KEK. */
	assert_int_equal(a->archive_kek.method, KEK_METHOD_AES256_GCM);
	assert_int_equal(a->archive_kek.key.len, 32);
	assert_memory_equal(a->archive_kek.key.data, thirty_three, 32);
	assert_int_equal(a->archive_kek.init_vector.len, 12);
	assert_int_equal(a->archive_kek.init_vector.data[11], 0x44);
	assert_int_equal(a->archive_kek.auth_data.len, 11);
	assert_memory_equal(a->archive_kek.auth_data.data, "archive-aad", 11);
	device_config_free(&cfg);
	kek_free(&kek);
}

static void test_credentials_must_be_utf8(void **state)
{
	(void)state;
	/* "/w==" is the single byte 0xff; "wK8=" is the overlong c0 af. */
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: archive, type: s3, bucket: b,\n"
		    "  credentials: {access_key_id: \"/w==\", secret_access_key: \"c2VjcmV0\"}}\n",
		    "config: stripe_source.credentials.access_key_id: Decrypted AWS credential is "
		    "not valid UTF-8: invalid utf-8 sequence from index 0");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: archive, type: s3, bucket: b,\n"
		    "  credentials: {access_key_id: \"QQ==\", secret_access_key: \"QcCv\"}}\n",
		    "stripe_source.credentials.secret_access_key: Decrypted AWS credential is not "
		    "valid UTF-8: invalid utf-8 sequence from index 1");

	/* Multi-byte UTF-8 is fine. */
	struct device_config cfg;
	parse_ok("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		 "stripe_source: {source: archive, type: s3, bucket: b,\n"
		 "  credentials: {access_key_id: \"w6k=\", secret_access_key: \"8J+UkQ==\"}}\n",
		 &cfg);
	assert_string_equal(cfg.source.archive.access_key_id, "\xc3\xa9");
	assert_string_equal(cfg.source.archive.secret_access_key, "\xf0\x9f\x94\x91");
	device_config_free(&cfg);
}

static void test_unwrap_order(void **state)
{
	(void)state;
	struct kek kek;

	/* encryption_key is unwrapped before the source's secrets. */
	test_kek(&kek);
	parse_fails_kek("path: d\nmetadata_path: m\ncopy_on_read: true\n"
			"encryption_key: [\"" KEY1_B64 "\", \"" KEY2_B64 "\"]\n"
			"stripe_source: {source: remote, address: a, psk_identity: i,\n"
			"  psk_secret: \"AAAA\"}\n",
			&kek, "encryption_key[0]: Failed to decrypt data");
	parse_fails_kek("path: d\nmetadata_path: m\ncopy_on_read: true\n"
			"stripe_source: {source: remote, address: a, psk_identity: i,\n"
			"  psk_secret: \"AAAA\"}\n",
			&kek,
			"config: stripe_source.psk_secret: Failed to decrypt data: aead::Error");
	/* archive_kek before credentials. */
	parse_fails_kek("path: d\nmetadata_path: m\ncopy_on_read: true\n"
			"stripe_source: {source: archive, type: s3, bucket: b,\n"
			"  credentials: {access_key_id: \"AAAA\", secret_access_key: \"AAAA\"},\n"
			"  archive_kek: {method: none, key: \"AAAA\"}}\n",
			&kek, "stripe_source.archive_kek.key: Failed to decrypt data");
	kek_free(&kek);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wrapped_encryption_key_yields_xts_keys),
	    cmocka_unit_test(test_plain_encryption_key_with_method_none),
	    cmocka_unit_test(test_encryption_key_unwrap_errors),
	    cmocka_unit_test(test_no_secrets_never_touch_the_kek),
	    cmocka_unit_test(test_remote_psk_secret_unwrapped),
	    cmocka_unit_test(test_archive_secrets_unwrapped),
	    cmocka_unit_test(test_credentials_must_be_utf8),
	    cmocka_unit_test(test_unwrap_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

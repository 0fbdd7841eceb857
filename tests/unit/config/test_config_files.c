/* Loading from files: the device config (read/parse error texts with path,
 * line and column) and the standalone remote and archive configs. */
#include "config_test_util.h"

/* err must start with "config <path>: " and contain `rest`. */
static void assert_path_message(const char *err, const char *path, const char *rest)
{
	char prefix[ERROR_TEXT_MAX];
	snprintf(prefix, sizeof(prefix), "config %s: ", path);
	if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, rest))
		fail_msg("expected \"%s...%s\", got \"%s\"", prefix, rest, err);
	assert_null(strchr(err, '\n'));
}

static void test_load_device_config(void **state)
{
	(void)state;
	struct error err = {0};
	struct device_config cfg;
	char *path = write_temp_file("path: \"disk.raw\"\nsocket: \"vhost.sock\"\n");

	assert_int_equal(device_config_load(path, NULL, &cfg, &err), 0);
	assert_string_equal(cfg.path, "disk.raw");
	assert_string_equal(cfg.socket, "vhost.sock");
	device_config_free(&cfg);
	remove_temp_file(path);
}

static void test_load_with_kek(void **state)
{
	(void)state;
	struct error err = {0};
	struct device_config cfg;
	struct kek kek;
	char *kek_path = write_temp_file(TEST_KEK_YAML);
	char *path = write_temp_file("path: disk.raw\nencryption_key:\n  - \"" KEY1_WRAPPED_B64
				     "\"\n  - \"" KEY2_WRAPPED_B64 "\"\n");

	assert_int_equal(kek_load(kek_path, &kek, &err), 0);
	assert_int_equal(device_config_load(path, &kek, &cfg, &err), 0);
	assert_int_equal(cfg.encryption_key[0][0], 0x01);
	assert_int_equal(cfg.encryption_key[1][0], 0xfe);
	device_config_free(&cfg);
	kek_free(&kek);
	remove_temp_file(path);
	remove_temp_file(kek_path);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct error err = {0};
	struct device_config cfg;

	assert_int_equal(device_config_load("/nonexistent/disk.yaml", NULL, &cfg, &err), -ENOENT);
	assert_string_equal(err.text,
			    "Failed to read device config file /nonexistent/disk.yaml: No "
			    "such file or directory");
	assert_null(cfg.path);
	assert_int_equal(device_config_load("/", NULL, &cfg, &err), -EISDIR);
	assert_string_equal(err.text, "Failed to read device config file /: Is a directory");
}

static void test_oversized_file(void **state)
{
	(void)state;
	struct error err = {0};
	struct device_config cfg;
	size_t size = (1u << 20) + 10;
	char *text = malloc(size + 1);

	assert_non_null(text);
	memset(text, '#', size);
	text[size] = '\0';
	char *path = write_temp_file(text);
	free(text);
	assert_int_equal(device_config_load(path, NULL, &cfg, &err), -EFBIG);
	assert_non_null(strstr(err.text, "File too large"));
	remove_temp_file(path);
}

static void test_broken_yaml(void **state)
{
	(void)state;
	struct error err = {0};
	struct device_config cfg;
	char *path = write_temp_file("path: d\nnum_queues: [1, 2\nsocket: s\n");

	assert_int_equal(device_config_load(path, NULL, &cfg, &err), -EINVAL);
	assert_path_message(err.text, path, "Failed to parse device config YAML: ");
	assert_non_null(strstr(err.text, "at line 3 column 7"));
	remove_temp_file(path);

	path = write_temp_file("path: d\n  bad indent: x\n");
	assert_int_equal(device_config_load(path, NULL, &cfg, &err), -EINVAL);
	assert_path_message(err.text, path,
			    "Failed to parse device config YAML: mapping values are not "
			    "allowed in this context at line 2 column 13");
	remove_temp_file(path);

	path = write_temp_file("path: \"unterminated\n");
	assert_int_equal(device_config_load(path, NULL, &cfg, &err), -EINVAL);
	assert_path_message(err.text, path, "found unexpected end of stream at line 2 column 1");
	remove_temp_file(path);
}

static void test_validation_message_names_file(void **state)
{
	(void)state;
	struct error err = {0};
	struct device_config cfg;
	char *path = write_temp_file("path: d\nnum_queues: 0\n");

	assert_int_equal(device_config_load(path, NULL, &cfg, &err), -EINVAL);
	char expected[ERROR_TEXT_MAX];
	snprintf(expected, sizeof(expected), "config %s: num_queues: 0 is out of range 1..64",
		 path);
	assert_string_equal(err.text, expected);
	remove_temp_file(path);
}

static void test_remote_listen_config(void **state)
{
	(void)state;
	struct error err = {0};
	struct remote_source_config remote;
	struct kek kek;
	char *path =
	    write_temp_file("source: remote\naddress: \"0.0.0.0:4555\"\npsk_identity: 12345\n"
			    "psk_secret: \"n4samF07axobZwoVw02cRCrZtk8JgNofYExifqxMzL4=\"\n");

	test_kek(&kek);
	assert_int_equal(remote_config_load(path, &kek, &remote, &err), 0);
	assert_string_equal(remote.address, "0.0.0.0:4555");
	/* Not internally tagged: plain scalars are literal strings. */
	assert_string_equal(remote.psk_identity, "12345");
	assert_int_equal(remote.psk_secret.len, 16);
	assert_memory_equal(remote.psk_secret.data, "0123456789ABCDEF", 16);
	remote_config_free(&remote);
	assert_null(remote.address);
	remove_temp_file(path);

	const char *only_identity = "address: a\npsk_identity: x\n";
	assert_int_equal(
	    remote_config_parse(only_identity, strlen(only_identity), NULL, &remote, &err),
	    -EINVAL);
	assert_string_equal(err.text,
			    "psk_identity: Both psk_identity and psk_secret must be specified "
			    "together.");
	const char *no_address = "psk_identity: x\n";
	assert_int_equal(remote_config_parse(no_address, strlen(no_address), NULL, &remote, &err),
			 -EINVAL);
	assert_string_equal(err.text,
			    "Failed to parse remote config YAML: missing field `address`");
	const char *plain = "address: a\n";
	assert_int_equal(remote_config_parse(plain, strlen(plain), NULL, &remote, &err), 0);
	assert_false(remote.psk_secret.present);
	remote_config_free(&remote);

	assert_int_equal(remote_config_load("/nonexistent/listen.yaml", NULL, &remote, &err),
			 -ENOENT);
	assert_string_equal(err.text,
			    "Failed to read remote config file /nonexistent/listen.yaml: No "
			    "such file or directory");
	path = write_temp_file("address: [\n");
	assert_int_equal(remote_config_load(path, NULL, &remote, &err), -EINVAL);
	assert_path_message(err.text, path, "Failed to parse remote config YAML: ");
	remove_temp_file(path);
	kek_free(&kek);
}

static void test_archive_target_config(void **state)
{
	(void)state;
	struct error err = {0};
	struct archive_source_config archive;
	struct kek kek;
	char *path =
	    write_temp_file("type: s3\nbucket: images\nconnections: 8\n"
			    "credentials:\n"
			    "  access_key_id: \"7vFh6ixWHGBzEg5zwT7Otw0pQWkTFBbwrGj9\"\n"
			    "  secret_access_key: \"7vFh6ixWHGBzEg5zwT7Otw0pQWkTFBbwrGj9\"\n");

	test_kek(&kek);
	assert_int_equal(archive_config_load(path, &kek, &archive, &err), 0);
	assert_int_equal(archive.store, ARCHIVE_STORE_S3);
	assert_string_equal(archive.bucket, "images");
	assert_int_equal(archive.connections, 8);
	assert_string_equal(archive.access_key_id, "AKIAEXAMPLE");
	assert_string_equal(archive.secret_access_key, "AKIAEXAMPLE");
	archive_config_free(&archive);
	remove_temp_file(path);

	const char *fs = "type: filesystem\npath: /srv/archive\n";
	assert_int_equal(archive_config_parse(fs, strlen(fs), NULL, &archive, &err), 0);
	assert_string_equal(archive.path, "/srv/archive");
	assert_int_equal(archive.connections, 16);
	assert_int_equal(archive.archive_kek.method, KEK_METHOD_NONE);
	archive_config_free(&archive);

	const char *bad_prefix = "type: s3\nbucket: b\nprefix: valid/../invalid\n";
	assert_int_equal(archive_config_parse(bad_prefix, strlen(bad_prefix), NULL, &archive, &err),
			 -EINVAL);
	assert_string_equal(
	    err.text, "prefix: Invalid S3 prefix (contains . or .. components): valid/../invalid");
	/* Tagged by `type`: a number is not a bucket name. */
	const char *typed = "type: s3\nbucket: 2024\n";
	assert_int_equal(archive_config_parse(typed, strlen(typed), NULL, &archive, &err), -EINVAL);
	assert_string_equal(err.text,
			    "Failed to parse archive target config YAML: bucket: invalid type: "
			    "integer `2024`, expected a string at line 2 column 9");

	assert_int_equal(archive_config_load("/nonexistent/t.yaml", NULL, &archive, &err), -ENOENT);
	assert_string_equal(err.text,
			    "Failed to read archive target config /nonexistent/t.yaml: No such "
			    "file or directory");
	path = write_temp_file("type: s3\nbucket: {\n");
	assert_int_equal(archive_config_load(path, NULL, &archive, &err), -EINVAL);
	assert_path_message(err.text, path, "Failed to parse archive target config YAML: ");
	remove_temp_file(path);
	kek_free(&kek);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_load_device_config),
	    cmocka_unit_test(test_load_with_kek),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_oversized_file),
	    cmocka_unit_test(test_broken_yaml),
	    cmocka_unit_test(test_validation_message_names_file),
	    cmocka_unit_test(test_remote_listen_config),
	    cmocka_unit_test(test_archive_target_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Device config fields: defaults, every top-level field, every stripe_source
 * variant, image_path equivalence. */
#include "config_test_util.h"

static void test_defaults(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: /dev/vdb\n", &cfg);
	assert_string_equal(cfg.path, "/dev/vdb");
	assert_null(cfg.image_path);
	assert_int_equal(cfg.source.kind, STRIPE_SOURCE_NONE);
	assert_null(cfg.source.raw_path);
	assert_null(cfg.metadata_path);
	assert_null(cfg.rpc_socket_path);
	assert_null(cfg.socket);
	assert_null(cfg.cpus);
	assert_int_equal(cfg.cpus_len, 0);
	assert_int_equal(cfg.num_queues, 1);
	assert_int_equal(cfg.queue_size, 64);
	assert_int_equal(cfg.seg_size_max, 65536);
	assert_int_equal(cfg.seg_count_max, 4);
	assert_int_equal(cfg.poll_queue_timeout_us, 1000);
	assert_false(cfg.copy_on_read);
	assert_false(cfg.track_written);
	assert_false(cfg.write_through);
	assert_false(cfg.autofetch);
	assert_false(cfg.has_encryption_key);
	assert_string_equal(cfg.device_id, "ubiblk");
	assert_int_equal(cfg.io_engine, IO_ENGINE_IO_URING);
	device_config_free(&cfg);

	/* device_config_init gives the same defaults without parsing. */
	device_config_init(&cfg);
	assert_int_equal(cfg.queue_size, 64);
	assert_string_equal(cfg.device_id, "ubiblk");
	device_config_free(&cfg);
}

static void test_every_top_level_field(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: disk.raw\n"
		 "metadata_path: disk.metadata\n"
		 "rpc_socket_path: rpc.sock\n"
		 "socket: vhost.sock\n"
		 "cpus: [3, 1]\n"
		 "num_queues: 2\n"
		 "queue_size: 256\n"
		 "seg_size_max: 131072\n"
		 "seg_count_max: 128\n"
		 "poll_queue_timeout_us: 5000\n"
		 "copy_on_read: true\n"
		 "track_written: True\n"
		 "write_through: TRUE\n"
		 "autofetch: true\n"
		 "encryption_key:\n"
		 "  - \"" KEY1_B64 "\"\n"
		 "  - \"" KEY2_B64 "\"\n"
		 "device_id: vm-1234\n"
		 "io_engine: sync\n"
		 "some_future_option: 7\n",
		 &cfg);
	assert_string_equal(cfg.path, "disk.raw");
	assert_string_equal(cfg.metadata_path, "disk.metadata");
	assert_string_equal(cfg.rpc_socket_path, "rpc.sock");
	assert_string_equal(cfg.socket, "vhost.sock");
	assert_int_equal(cfg.cpus_len, 2);
	assert_int_equal(cfg.cpus[0], 3);
	assert_int_equal(cfg.cpus[1], 1);
	assert_int_equal(cfg.num_queues, 2);
	assert_int_equal(cfg.queue_size, 256);
	assert_int_equal(cfg.seg_size_max, 131072);
	assert_int_equal(cfg.seg_count_max, 128);
	assert_int_equal(cfg.poll_queue_timeout_us, 5000);
	assert_true(cfg.copy_on_read);
	assert_true(cfg.track_written);
	assert_true(cfg.write_through);
	assert_true(cfg.autofetch);
	assert_true(cfg.has_encryption_key);
	assert_int_equal(cfg.encryption_key[0][0], 0x01);
	assert_int_equal(cfg.encryption_key[0][31], 0xef);
	assert_int_equal(cfg.encryption_key[1][0], 0xfe);
	assert_int_equal(cfg.encryption_key[1][31], 0x10);
	assert_string_equal(cfg.device_id, "vm-1234");
	assert_int_equal(cfg.io_engine, IO_ENGINE_SYNC);
	device_config_free(&cfg);
	assert_null(cfg.path);
	assert_false(cfg.has_encryption_key);
	assert_int_equal(cfg.encryption_key[0][0], 0);
}

static void test_io_engines(void **state)
{
	(void)state;
	static const struct {
		const char *yaml;
		enum io_engine engine;
		const char *name;
	} cases[] = {
	    {"path: d\nio_engine: io_uring\n", IO_ENGINE_IO_URING, "io_uring"},
	    {"path: d\nio_engine: \"sync\"\n", IO_ENGINE_SYNC, "sync"},
	    /* The measuring engine: its name needs no quotes. */
	    {"path: d\nio_engine: null\n", IO_ENGINE_NULL, "null"},
	    {"path: d\nio_engine: 'null'\n", IO_ENGINE_NULL, "null"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct device_config cfg;
		parse_ok(cases[i].yaml, &cfg);
		assert_int_equal(cfg.io_engine, cases[i].engine);
		assert_string_equal(io_engine_name(cfg.io_engine), cases[i].name);
		device_config_free(&cfg);
	}
}

static void test_device_id_length(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: d\ndevice_id: \"12345678901234567890\"\n", &cfg);
	assert_string_equal(cfg.device_id, "12345678901234567890");
	device_config_free(&cfg);
	/* 20 bytes of UTF-8 (10 two-byte characters). */
	parse_ok("path: d\ndevice_id: \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		 "\xc3\xa9\xc3\xa9\xc3\xa9\"\n",
		 &cfg);
	assert_int_equal(strlen(cfg.device_id), 20);
	device_config_free(&cfg);
	parse_ok("path: d\ndevice_id: \"\"\n", &cfg);
	assert_string_equal(cfg.device_id, "");
	device_config_free(&cfg);

	parse_fails("path: d\ndevice_id: \"123456789012345678901\"\n",
		    "config: Failed to parse device config YAML: device_id exceeds maximum of 20 "
		    "bytes at line 2 column 12");
	parse_fails("path: d\ndevice_id: \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9x\"\n",
		    "device_id exceeds maximum of 20 bytes");
}

static void test_raw_source(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: disk.raw\n"
		 "metadata_path: disk.metadata\n"
		 "stripe_source: { source: raw, path: \"base.raw\", bucket: ignored }\n",
		 &cfg);
	assert_int_equal(cfg.source.kind, STRIPE_SOURCE_RAW);
	assert_string_equal(cfg.source.raw_path, "base.raw");
	assert_false(cfg.source.from_image_path);
	assert_null(cfg.image_path);
	device_config_free(&cfg);
}

static void test_image_path_is_a_raw_source(void **state)
{
	(void)state;
	struct device_config legacy, modern;

	parse_ok("path: disk.raw\nmetadata_path: m\nimage_path: base.raw\n", &legacy);
	parse_ok(
	    "path: disk.raw\nmetadata_path: m\nstripe_source:\n  source: raw\n  path: base.raw\n",
	    &modern);
	assert_int_equal(legacy.source.kind, STRIPE_SOURCE_RAW);
	assert_int_equal(modern.source.kind, STRIPE_SOURCE_RAW);
	assert_string_equal(legacy.source.raw_path, "base.raw");
	assert_string_equal(modern.source.raw_path, legacy.source.raw_path);
	assert_true(legacy.source.from_image_path);
	assert_false(modern.source.from_image_path);
	assert_string_equal(legacy.image_path, "base.raw");
	assert_null(modern.image_path);
	device_config_free(&legacy);
	device_config_free(&modern);

	/* An empty image_path is absent, like every optional string. */
	parse_ok("path: d\nimage_path:\n", &legacy);
	assert_int_equal(legacy.source.kind, STRIPE_SOURCE_NONE);
	device_config_free(&legacy);
}

static void test_remote_source(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		 "stripe_source:\n"
		 "  source: remote\n"
		 "  address: \"127.0.0.1:4555\"\n"
		 "  psk_identity: client-1\n"
		 "  psk_secret: \"MDEyMzQ1Njc4OUFCQ0RFRg==\"\n",
		 &cfg);
	assert_int_equal(cfg.source.kind, STRIPE_SOURCE_REMOTE);
	assert_null(cfg.source.raw_path);
	assert_string_equal(cfg.source.remote.address, "127.0.0.1:4555");
	assert_string_equal(cfg.source.remote.psk_identity, "client-1");
	assert_true(cfg.source.remote.psk_secret.present);
	assert_int_equal(cfg.source.remote.psk_secret.len, 16);
	assert_memory_equal(cfg.source.remote.psk_secret.data, "0123456789ABCDEF", 16);
	assert_int_equal(cfg.source.remote.connections, 16); /* the default */
	device_config_free(&cfg);

	/* Neither identity nor secret: plain TCP, valid. */
	parse_ok("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		 "stripe_source: {source: remote, address: \"[::1]:4555\", connections: 3}\n",
		 &cfg);
	assert_int_equal(cfg.source.remote.connections, 3);
	assert_null(cfg.source.remote.psk_identity);
	assert_false(cfg.source.remote.psk_secret.present);
	device_config_free(&cfg);
}

static void test_archive_filesystem_source(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		 "stripe_source: {source: archive, type: filesystem, path: /srv/archive}\n",
		 &cfg);
	assert_int_equal(cfg.source.kind, STRIPE_SOURCE_ARCHIVE);
	assert_int_equal(cfg.source.archive.store, ARCHIVE_STORE_FILESYSTEM);
	assert_string_equal(cfg.source.archive.path, "/srv/archive");
	assert_int_equal(cfg.source.archive.connections, 16);
	assert_int_equal(cfg.source.archive.archive_kek.method, KEK_METHOD_NONE);
	assert_false(cfg.source.archive.archive_kek.key.present);
	assert_false(cfg.source.archive.has_credentials);
	device_config_free(&cfg);
}

static void test_archive_s3_source(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		 "stripe_source:\n"
		 "  source: archive\n"
		 "  type: s3\n"
		 "  bucket: images\n"
		 "  prefix: debian/12\n"
		 "  endpoint: \"http://127.0.0.1:4568\"\n"
		 "  region: eu-central-1\n"
		 "  profile: ops\n"
		 "  connections: 32\n"
		 "  credentials:\n"
		 "    access_key_id: QUtJQUVYQU1QTEU=\n"
		 "    secret_access_key: c2VjcmV0\n"
		 "    session_token: dG9rZW4=\n"
		 "  addressing: path\n"
		 "  max_attempts: 5\n"
		 "  archive_kek:\n"
		 "    method: aes256-gcm\n"
		 "    key: MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM\n"
		 "    init_vector: RERERERERERERERE\n"
		 "    auth_data: YXJjaGl2ZS1hYWQ=\n",
		 &cfg);
	const struct archive_source_config *a = &cfg.source.archive;
	assert_int_equal(cfg.source.kind, STRIPE_SOURCE_ARCHIVE);
	assert_int_equal(a->store, ARCHIVE_STORE_S3);
	assert_string_equal(a->bucket, "images");
	assert_string_equal(a->prefix, "debian/12");
	assert_string_equal(a->endpoint, "http://127.0.0.1:4568");
	assert_string_equal(a->region, "eu-central-1");
	assert_string_equal(a->profile, "ops");
	assert_int_equal(a->connections, 32);
	assert_true(a->has_credentials);
	assert_string_equal(a->access_key_id, "AKIAEXAMPLE");
	assert_string_equal(a->secret_access_key, "secret");
	assert_string_equal(a->session_token, "token");
	assert_int_equal(a->addressing, S3_ADDRESSING_PATH);
	assert_int_equal(a->max_attempts, 5);
	assert_int_equal(a->archive_kek.method, KEK_METHOD_AES256_GCM);
	assert_int_equal(a->archive_kek.key.len, 32);
	assert_int_equal(a->archive_kek.key.data[0], 0x33);
	assert_int_equal(a->archive_kek.init_vector.len, 12);
	assert_memory_equal(a->archive_kek.auth_data.data, "archive-aad", 11);
	device_config_free(&cfg);

	/* S3 defaults. */
	parse_ok("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		 "stripe_source: {source: archive, type: s3, bucket: b}\n",
		 &cfg);
	a = &cfg.source.archive;
	assert_null(a->prefix);
	assert_null(a->endpoint);
	assert_null(a->region);
	assert_null(a->profile);
	assert_false(a->has_credentials);
	assert_null(a->access_key_id);
	assert_null(a->session_token);
	assert_int_equal(a->addressing, S3_ADDRESSING_AUTO);
	assert_int_equal(a->max_attempts, 3);
	assert_int_equal(a->connections, 16);
	assert_int_equal(a->archive_kek.method, KEK_METHOD_NONE);
	device_config_free(&cfg);
}

static void test_stripe_source_shape_errors(void **state)
{
	(void)state;
	parse_fails("path: d\nmetadata_path: m\nstripe_source: {path: x}\n",
		    "stripe_source: missing field `source` at line 3 column 16");
	parse_fails(
	    "path: d\nmetadata_path: m\nstripe_source: {source: http}\n",
	    "stripe_source.source: unknown variant `http`, expected one of `raw`, `remote`, "
	    "`archive` at line 3 column 25");
	parse_fails("path: d\nmetadata_path: m\nstripe_source: {source: raw}\n",
		    "stripe_source: missing field `path`");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: remote}\n",
		    "stripe_source: missing field `address`");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: archive, path: /a}\n",
		    "stripe_source: missing field `type`");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: archive, type: gcs}\n",
		    "stripe_source.type: unknown variant `gcs`, expected `filesystem` or `s3`");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: archive, type: filesystem}\n",
		    "stripe_source: missing field `path`");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: archive, type: s3}\n",
		    "stripe_source: missing field `bucket`");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: archive, type: s3, bucket: b,\n"
		    "  credentials: {access_key_id: QUtJQQ==}}\n",
		    "stripe_source.credentials: missing field `secret_access_key`");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: true\n"
		    "stripe_source: {source: archive, type: filesystem, path: p,\n"
		    "  archive_kek: {key: AQ==}}\n",
		    "stripe_source.archive_kek: missing field `method`");
	parse_fails("path: d\nstripe_source: [raw]\n",
		    "stripe_source: invalid type: sequence, expected a map at line 2 column 16");
}

static void test_stripe_source_null_is_absent(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: d\nstripe_source: ~\n", &cfg);
	assert_int_equal(cfg.source.kind, STRIPE_SOURCE_NONE);
	device_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_every_top_level_field),
	    cmocka_unit_test(test_io_engines),
	    cmocka_unit_test(test_device_id_length),
	    cmocka_unit_test(test_raw_source),
	    cmocka_unit_test(test_image_path_is_a_raw_source),
	    cmocka_unit_test(test_remote_source),
	    cmocka_unit_test(test_archive_filesystem_source),
	    cmocka_unit_test(test_archive_s3_source),
	    cmocka_unit_test(test_stripe_source_shape_errors),
	    cmocka_unit_test(test_stripe_source_null_is_absent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

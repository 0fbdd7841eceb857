/* YAML typing rules of the device config (serde_yaml 0.9's): booleans,
 * unsigned integers, optional fields, literal strings at the top level
 * versus typed strings inside stripe_source, encryption_key shapes. */
#include "config_test_util.h"

static void test_booleans(void **state)
{
	(void)state;
	static const char *const accepted[][2] = {{"true", "1"},  {"True", "1"},  {"TRUE", "1"},
						  {"false", "0"}, {"False", "0"}, {"FALSE", "0"}};
	char yaml[128];

	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		struct device_config cfg;
		snprintf(yaml, sizeof(yaml), "path: d\ncopy_on_read: %s\nautofetch: %s\n",
			 accepted[i][0], accepted[i][0]);
		parse_ok(yaml, &cfg);
		assert_int_equal(cfg.copy_on_read, accepted[i][1][0] == '1');
		assert_int_equal(cfg.autofetch, accepted[i][1][0] == '1');
		device_config_free(&cfg);
	}
	parse_fails(
	    "path: d\ncopy_on_read: yes\n",
	    "config: Failed to parse device config YAML: copy_on_read: invalid type: string "
	    "\"yes\", expected a boolean at line 2 column 15");
	parse_fails("path: d\ntrack_written: on\n", "track_written: invalid type: string \"on\"");
	parse_fails("path: d\nwrite_through: \"true\"\n",
		    "write_through: invalid type: string \"true\", expected a boolean");
	parse_fails("path: d\nautofetch: 1\n",
		    "autofetch: invalid type: integer `1`, expected a boolean");
	parse_fails("path: d\nautofetch: ~\n", "autofetch: invalid type: unit value, expected a "
					       "boolean");
	parse_fails("path: d\nautofetch:\n", "autofetch: invalid type: unit value");
}

static void test_unsigned_integers(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok(
	    "path: d\nnum_queues: +4\nqueue_size: 0x100\nseg_count_max: 0o20\n"
	    "seg_size_max: 0b1000000000\npoll_queue_timeout_us: 0\ncpus: [0x1, +2, 0o3, 0b0]\n",
	    &cfg);
	assert_int_equal(cfg.num_queues, 4);
	assert_int_equal(cfg.queue_size, 256);
	assert_int_equal(cfg.seg_count_max, 16);
	assert_int_equal(cfg.seg_size_max, 512);
	assert_int_equal(cfg.poll_queue_timeout_us, 0);
	assert_int_equal(cfg.cpus[0], 1);
	assert_int_equal(cfg.cpus[1], 2);
	assert_int_equal(cfg.cpus[2], 3);
	assert_int_equal(cfg.cpus[3], 0);
	device_config_free(&cfg);

	parse_fails("path: d\nnum_queues: -1\n",
		    "num_queues: invalid value: integer `-1`, expected u32 at line 2 column 13");
	parse_fails("path: d\nnum_queues: \"4\"\n",
		    "num_queues: invalid type: string \"4\", expected u32 at line 2 column 13");
	parse_fails("path: d\nqueue_size: '64'\n", "queue_size: invalid type: string \"64\"");
	parse_fails("path: d\nqueue_size: 64.0\n",
		    "queue_size: invalid type: floating point `64.0`, expected u32");
	parse_fails("path: d\nqueue_size: 1e3\n", "queue_size: invalid type: floating point");
	/* YAML 1.2: a leading zero makes a string, not octal. */
	parse_fails("path: d\nqueue_size: 064\n", "queue_size: invalid type: string \"064\"");
	parse_fails("path: d\nqueue_size: ~\n",
		    "queue_size: invalid type: unit value, expected u32");
	parse_fails("path: d\nqueue_size:\n", "queue_size: invalid type: unit value");
	parse_fails("path: d\nqueue_size: true\n", "queue_size: invalid type: boolean `true`");
	parse_fails("path: d\nqueue_size: [64]\n", "queue_size: invalid type: sequence");
	parse_fails("path: d\nqueue_size: 0x\n", "queue_size: invalid type: string \"0x\"");
	parse_fails("path: d\nseg_size_max: 4294967296\n",
		    "seg_size_max: invalid value: integer `4294967296`, expected u32");
	parse_fails(
	    "path: d\npoll_queue_timeout_us: 18446744073709551616\n",
	    "poll_queue_timeout_us: invalid value: integer `18446744073709551616`, expected "
	    "u64");
	parse_fails("path: d\npoll_queue_timeout_us: -0x10\n",
		    "poll_queue_timeout_us: invalid value: integer `-0x10`, expected u64");
	parse_fails("path: d\ncpus: 3\n", "cpus: invalid type: integer `3`, expected a sequence");
	parse_fails("path: d\nnum_queues: 2\ncpus: [1, -2]\n",
		    "cpus[1]: invalid value: integer `-2`, expected u32 at line 3 column 11");
}

static void test_optional_fields(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: d\nmetadata_path: null\nrpc_socket_path: ~\nsocket:\nimage_path: NULL\n"
		 "cpus: Null\nencryption_key: ~\nstripe_source: null\n",
		 &cfg);
	assert_null(cfg.metadata_path);
	assert_null(cfg.rpc_socket_path);
	assert_null(cfg.socket);
	assert_null(cfg.image_path);
	assert_null(cfg.cpus);
	assert_false(cfg.has_encryption_key);
	assert_int_equal(cfg.source.kind, STRIPE_SOURCE_NONE);
	device_config_free(&cfg);

	/* Quoted "null" is text; an empty list is present and empty. */
	parse_ok("path: d\nsocket: \"null\"\nrpc_socket_path: ''\n", &cfg);
	assert_string_equal(cfg.socket, "null");
	assert_string_equal(cfg.rpc_socket_path, "");
	device_config_free(&cfg);
}

static void test_top_level_strings_are_literal(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: 123\ndevice_id: null\nsocket: true\nmetadata_path: 0x10\n", &cfg);
	assert_string_equal(cfg.path, "123");
	assert_string_equal(cfg.device_id, "null");
	assert_string_equal(cfg.socket, "true");
	assert_string_equal(cfg.metadata_path, "0x10");
	device_config_free(&cfg);

	parse_ok("path: d\ndevice_id:\n", &cfg);
	assert_string_equal(cfg.device_id, "");
	device_config_free(&cfg);
	parse_ok("path: d\ndevice_id: 12345\n", &cfg);
	assert_string_equal(cfg.device_id, "12345");
	device_config_free(&cfg);

	parse_fails("path: [a]\n", "path: invalid type: sequence, expected a string at line 1 "
				   "column 7");
	parse_fails("path: d\nsocket: {a: 1}\n", "socket: invalid type: map, expected a string");
	/* Control characters are escaped so the message stays on one line. */
	parse_fails("path: d\nnum_queues: \"1\\n2\\x01\"\n",
		    "num_queues: invalid type: string \"1\\n2\\x01\", expected u32");
	parse_fails("path: d\nio_engine: \"a\\tb\"\n", "unknown variant `a\\tb`");
	/* Long values are cut. */
	parse_fails(
	    "path: d\nnum_queues: "
	    "x123456789012345678901234567890123456789012345678901234567890123456789\n",
	    "string \"x123456789012345678901234567890123456789012345678901234567890123...\"");
	/* A NUL would silently shorten a path. */
	parse_fails("path: \"disk\\0.raw\"\n", "path: string contains a NUL character");
}

static void test_stripe_source_strings_are_typed(void **state)
{
	(void)state;
	struct device_config cfg;
	const char *head = "path: d\nmetadata_path: m\ncopy_on_read: true\n";
	char yaml[512];

	snprintf(yaml, sizeof(yaml),
		 "%sstripe_source: {source: remote, address: \"1.2.3.4:5\", psk_identity: 12345}\n",
		 head);
	parse_fails(yaml, "stripe_source.psk_identity: invalid type: integer `12345`, expected a "
			  "string");
	snprintf(yaml, sizeof(yaml), "%sstripe_source: {source: raw, path: true}\n", head);
	parse_fails(yaml, "stripe_source.path: invalid type: boolean `true`, expected a string");
	snprintf(yaml, sizeof(yaml),
		 "%sstripe_source: {source: archive, type: s3, bucket: b, region: 1.5}\n", head);
	parse_fails(yaml, "stripe_source.region: invalid type: floating point `1.5`");
	snprintf(yaml, sizeof(yaml), "%sstripe_source: {source: raw, path: }\n", head);
	parse_fails(yaml, "stripe_source.path: invalid type: unit value, expected a string");

	/* Quoted, the same values are strings; null optional fields are absent. */
	snprintf(yaml, sizeof(yaml),
		 "%sstripe_source: {source: remote, address: \"1.2.3.4:5\", psk_identity: "
		 "\"12345\",\n  psk_secret: \"MDEyMzQ1Njc4OUFCQ0RFRg==\"}\n",
		 head);
	parse_ok(yaml, &cfg);
	assert_string_equal(cfg.source.remote.psk_identity, "12345");
	device_config_free(&cfg);
	snprintf(yaml, sizeof(yaml),
		 "%sstripe_source: {source: archive, type: s3, bucket: \"2024\", prefix: ~,\n"
		 "  region: null, endpoint: }\n",
		 head);
	parse_ok(yaml, &cfg);
	assert_string_equal(cfg.source.archive.bucket, "2024");
	assert_null(cfg.source.archive.prefix);
	assert_null(cfg.source.archive.region);
	assert_null(cfg.source.archive.endpoint);
	device_config_free(&cfg);
}

static void test_secret_values_stay_out_of_messages(void **state)
{
	(void)state;
	struct error err = {0};
	struct device_config cfg;
	const char *yaml = "path: d\nmetadata_path: m\ncopy_on_read: true\n"
			   "stripe_source: {source: remote, address: a, psk_identity: i,\n"
			   "  psk_secret: 987654321}\n";

	assert_int_equal(device_config_parse(yaml, strlen(yaml), NULL, &cfg, &err), -EINVAL);
	assert_non_null(strstr(err.text,
			       "stripe_source.psk_secret: invalid type: integer, expected a "
			       "string"));
	assert_null(strstr(err.text, "987654321"));

	yaml = "path: d\nencryption_key: [{k: secretvalue}, b]\n";
	assert_int_equal(device_config_parse(yaml, strlen(yaml), NULL, &cfg, &err), -EINVAL);
	assert_non_null(
	    strstr(err.text, "encryption_key[0]: invalid type: map, expected a string"));
	assert_null(strstr(err.text, "secretvalue"));
}

static void test_encryption_key_shapes(void **state)
{
	(void)state;
	parse_fails("path: d\nencryption_key: {a: b}\n",
		    "encryption_key: invalid type: map, expected a tuple of size 2");
	parse_fails("path: d\nencryption_key: \"" KEY1_B64 "\"\n",
		    "encryption_key: invalid type: string, expected a tuple of size 2");
	parse_fails(
	    "path: d\nencryption_key: [\"" KEY1_B64 "\"]\n",
	    "encryption_key: invalid length 1, expected a tuple of size 2 at line 2 column 17");
	parse_fails("path: d\nencryption_key: []\n",
		    "encryption_key: invalid length 0, expected a tuple of size 2");
	parse_fails("path: d\nencryption_key: [\"" KEY1_B64 "\", \"" KEY2_B64 "\", \"" KEY1_B64
		    "\"]\n",
		    "encryption_key: invalid length 3, expected sequence of 2 elements");
	/* The base64 decoder's exact text, for either element. */
	parse_fails("path: d\nencryption_key: [\"%%%\", \"" KEY2_B64 "\"]\n",
		    "encryption_key[0]: Invalid symbol 37, offset 0. at line 2 column 18");
	parse_fails("path: d\nencryption_key: [\"" KEY1_B64 "\", \"%%%\"]\n",
		    "encryption_key[1]: Invalid symbol 37, offset 0.");
	/* Strict base64: no missing padding in config secrets. */
	parse_fails(
	    "path: d\nencryption_key: [\"ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8\", \"" KEY2_B64
	    "\"]\n",
	    "encryption_key[0]: Invalid padding");
	parse_fails("path: d\nencryption_key: [[1], \"" KEY2_B64 "\"]\n",
		    "encryption_key[0]: invalid type: sequence, expected a string");
	/* Elements are decoded, then must be 32 bytes (method none). */
	parse_fails("path: d\nencryption_key: [\"AQIDBAU=\", \"" KEY2_B64 "\"]\n",
		    "config: encryption_key[0]: Key length must be exactly 32 bytes");
}

static void test_enums(void **state)
{
	(void)state;
	parse_fails(
	    "path: d\nio_engine: uring\n",
	    "io_engine: unknown variant `uring`, expected one of `io_uring`, `sync`, `null` "
	    "at line 2 column 12");
	parse_fails(
	    "path: d\nio_engine: ~\n",
	    "io_engine: invalid type: unit value, expected one of `io_uring`, `sync`, `null`");
	parse_fails("path: d\nio_engine:\n", "io_engine: invalid type: unit value");
	parse_fails("path: d\nio_engine: Sync\n", "io_engine: unknown variant `Sync`");
	parse_fails("path: d\nio_engine: [sync]\n", "io_engine: invalid type: sequence");
}

static void test_document_shape(void **state)
{
	(void)state;
	struct device_config cfg;

	parse_ok("path: d\nnum_queues: &n 2\ncpus: [*n, *n]\n", &cfg);
	assert_int_equal(cfg.num_queues, 2);
	assert_int_equal(cfg.cpus[1], 2);
	device_config_free(&cfg);

	parse_fails("path: d\nnum_queues: 1\nnum_queues: 2\n",
		    "num_queues: duplicate field `num_queues` at line 3 column 1");
	parse_fails("path: d\n---\npath: e\n", "more than one document");
	parse_fails("just text\n", "invalid type: string \"just text\", expected a map at line 1 "
				   "column 1");
	parse_fails("- path: d\n", "invalid type: sequence, expected a map");
	/* Empty document: every field is missing. */
	parse_fails("", "config: missing field `path`");
	parse_fails("# only a comment\n", "config: missing field `path`");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_booleans),
	    cmocka_unit_test(test_unsigned_integers),
	    cmocka_unit_test(test_optional_fields),
	    cmocka_unit_test(test_top_level_strings_are_literal),
	    cmocka_unit_test(test_stripe_source_strings_are_typed),
	    cmocka_unit_test(test_secret_values_stay_out_of_messages),
	    cmocka_unit_test(test_encryption_key_shapes),
	    cmocka_unit_test(test_enums),
	    cmocka_unit_test(test_document_shape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
